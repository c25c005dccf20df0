//! One module per subcommand.

mod bench;
mod openapi;
mod purge;
mod serve;

// Client verbs (they talk to a running server).
mod client;
mod completions;
mod cp;
mod create;
mod exec;
mod info;
mod lifecycle;
mod list;
mod mcp;
mod output;
mod run;
mod shell;
mod template;

use anyhow::Result;

use hutch_client::Lifecycle;

use crate::cli::{BenchCommand, Cli, Command};
use client::exit_with;
use lifecycle::Action;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(BenchCommand::Lifecycle(args)) => bench::lifecycle::run(args),
        Command::Bench(BenchCommand::Exec(args)) => bench::exec::run(args),
        Command::Purge(args) => purge::run(args),
        Command::Openapi => openapi::run(),
        Command::Create(args) => exit_with(create::run(args)?),
        Command::Ls(args) => exit_with(list::run(args)?),
        Command::Info(args) => exit_with(info::run(args)?),
        Command::Kill(args) => exit_with(lifecycle::run(Action::Kill, args)?),
        Command::Pause(args) => exit_with(lifecycle::run(Action::Verb(Lifecycle::Pause), args)?),
        Command::Resume(args) => exit_with(lifecycle::run(Action::Verb(Lifecycle::Resume), args)?),
        Command::Stop(args) => exit_with(lifecycle::run(Action::Verb(Lifecycle::Stop), args)?),
        Command::Start(args) => exit_with(lifecycle::run(Action::Verb(Lifecycle::Start), args)?),
        Command::Timeout(args) => exit_with(lifecycle::timeout(args)?),
        Command::Run(args) => exit_with(run::run(args)?),
        Command::Exec(args) => exit_with(exec::run(args)?),
        Command::Cp(args) => exit_with(cp::run(args)?),
        Command::Shell(args) => exit_with(shell::run(args)?),
        Command::Template(cmd) => exit_with(template::run(cmd)?),
        Command::Completions(args) => exit_with(completions::run(args)?),
        Command::Mcp(args) => exit_with(mcp::run(args)?),
    }
}
