//! One module per subcommand.

mod bench;
mod purge;
mod serve;

use anyhow::Result;

use crate::cli::{BenchCommand, Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(BenchCommand::Lifecycle(args)) => bench::lifecycle::run(args),
        Command::Bench(BenchCommand::Exec(args)) => bench::exec::run(args),
        Command::Purge(args) => purge::run(args),
    }
}
