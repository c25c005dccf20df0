//! `hutch completions SHELL`: the completion script clap derives from the command line.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    // Generated into memory: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "hutch", &mut script);
    let _ = std::io::stdout().lock().write_all(&script);
    Ok(0)
}
