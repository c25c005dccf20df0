//! Manager settings.

use std::path::PathBuf;
use std::time::Duration;

use hutch_types::Resources;

/// How the manager behaves.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Root of everything on disk.
    pub data_dir: PathBuf,
    /// Limits of a sandbox whose create request names none.
    pub default_resources: Resources,
    /// CPUs on this host (upper bound of `vcpu`).
    pub host_cpus: u32,
    /// Memory on this host in MiB (upper bound of `memory_mb`).
    pub host_memory_mb: u64,
    /// Lifetime of an agent token. The SDK refreshes tokens with less than an hour left on every
    /// new `Sandbox` object, so this must be well above an hour.
    pub token_ttl: Duration,
    /// Longest `timeout_seconds` accepted.
    pub max_timeout: Duration,
    /// How long a stopping sandbox's agent gets to shut its kernels down.
    pub stop_grace: Duration,
    /// How long a new sandbox's agent has to answer its first health check.
    pub ready_timeout: Duration,
    /// Warm sandboxes kept ready for fast creates (0 disables the pool).
    pub pool_size: usize,
}

impl ManagerConfig {
    /// Defaults for a data directory, sized from this host.
    pub fn new(data_dir: PathBuf) -> Self {
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Self {
            data_dir,
            default_resources: Resources::default(),
            host_cpus,
            host_memory_mb: host_memory_mb().unwrap_or(4096),
            token_ttl: Duration::from_secs(24 * 3600),
            max_timeout: Duration::from_secs(30 * 24 * 3600),
            stop_grace: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(10),
            pool_size: 2,
        }
    }
}

fn host_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}
