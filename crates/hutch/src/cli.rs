//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hutch: self-hosted sandboxes for AI agents, speaking the HopX API.
#[derive(Debug, Parser)]
#[command(name = "hutch", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server: the HopX control plane and agent gateway on one port.
    #[command(
        after_help = "Examples:\n  sudo hutch serve\n  sudo hutch serve --listen 0.0.0.0:7770 --data-dir /srv/hutch --api-key secret"
    )]
    Serve(ServeArgs),
    /// Measure hutch against references taken in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Remove every sandbox of a data directory and stop its spawner, without a server.
    #[command(
        after_help = "Stop `hutch serve` first; the records are dropped on its next start.\n\nExample:\n  sudo hutch purge --data-dir /var/lib/hutch"
    )]
    Purge(PurgeArgs),
}

/// `hutch purge` options.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The data directory whose sandboxes to remove.
    #[arg(long, env = "HUTCH_DATA_DIR", default_value = "/var/lib/hutch")]
    pub data_dir: PathBuf,
}

/// `hutch serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (IPv4: the HopX SDK binds its client sockets to 0.0.0.0).
    #[arg(long, default_value = "127.0.0.1:7770", env = "HUTCH_LISTEN")]
    pub listen: SocketAddr,
    /// Where sandboxes, templates and the database live.
    #[arg(long, env = "HUTCH_DATA_DIR", default_value = "/var/lib/hutch")]
    pub data_dir: PathBuf,
    /// API key clients must send. Default: the one saved in the data dir, created on first start.
    #[arg(long, env = "HUTCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Base URL clients reach this server at (sandboxes' `public_host`). Default: from --listen.
    #[arg(long, env = "HUTCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Warm sandboxes kept ready so creates skip set-up (0 disables the pool).
    #[arg(long, env = "HUTCH_POOL_SIZE", default_value_t = 2)]
    pub pool_size: usize,
    /// Log filter (tracing syntax), e.g. `info` or `hutch_manager=debug`.
    #[arg(long, env = "HUTCH_LOG", default_value = "info")]
    pub log: String,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sandbox lifecycle: create → run → kill, against bare bwrap and python3 in the same run.
    Lifecycle(LifecycleArgs),
    /// Code execution through the HTTP API: warm round trips, create → first output (cold and
    /// pooled), concurrent creates; against bare python3 and bwrap in the same run.
    Exec(ExecBenchArgs),
}

/// `hutch bench exec` options.
#[derive(Debug, Args)]
pub struct ExecBenchArgs {
    /// Creates measured per mode (cold, pooled).
    #[arg(short = 'n', long, default_value_t = 50)]
    pub iterations: usize,
    /// Warm `1+1` round trips measured.
    #[arg(long, default_value_t = 500)]
    pub round_trips: usize,
    /// Sandboxes created at once in the burst measurement.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Warm pool size of the pooled server.
    #[arg(long, default_value_t = 2)]
    pub pool_size: usize,
}

/// `hutch bench lifecycle` options.
#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Iterations per measurement.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub iterations: usize,
    /// Give the sandboxes internet access (veth + NAT) instead of loopback only.
    #[arg(long)]
    pub internet: bool,
    /// Data directory for the benchmark's sandboxes (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}
