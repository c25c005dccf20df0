//! The `hutch` binary: server, benchmarks — and, in a hidden mode, the sandbox spawner.

mod cli;
mod commands;
mod setup;

use clap::Parser;

fn main() {
    // The spawner must stay single-threaded (it forks workers that clone sandbox inits), so it
    // is dispatched before anything — argument parsing included — can start a thread.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__spawner") {
        let Some(socket) = args.next() else {
            eprintln!("hutch __spawner: missing socket path");
            std::process::exit(2);
        };
        std::process::exit(hutch_runtime::native::spawner_main(
            std::path::Path::new(&socket),
            hutch_agent::pid1_main,
        ));
    }
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("hutch: {e:#}");
        std::process::exit(1);
    }
}
