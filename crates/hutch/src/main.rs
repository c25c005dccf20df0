//! The `hutch` binary: server, benchmarks — and, in a hidden mode, the sandbox spawn helper.

mod cli;
mod commands;
mod setup;

use clap::Parser;

fn main() {
    // The spawn helper must stay single-threaded until it clones the sandbox init, so it is
    // dispatched before anything (argument parsing included) can start a thread.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__spawn") {
        std::process::exit(hutch_runtime::native::spawn_main(hutch_agent::pid1_main));
    }
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("hutch: {e:#}");
        std::process::exit(1);
    }
}
