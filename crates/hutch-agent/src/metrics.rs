//! Request counters and timings for `/metrics/*`, and the sandbox's own CPU and memory figures.
//!
//! The counters are process-global: the [`track`] middleware is a plain `from_fn` layer without
//! access to the agent state, and there is exactly one agent per process anyway.
//!
//! Inside the sandbox there is no cgroup filesystem and `/proc/meminfo`/`/proc/stat` describe the
//! host, so the sandbox's figures are computed from its own processes (everything in its pid
//! namespace's `/proc`) against the limits the control plane gave it ([`AgentBoot::resources`]):
//! CPU use is the growth of all processes' CPU time over wall time and the vCPU quota; memory in
//! use is the sum of resident sets against the memory limit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use hutch_types::{AgentBoot, Resources};

use crate::process::procfs;

/// Distinct paths tracked; anything beyond is counted under [`OTHER_PATH`].
const MAX_PATHS: usize = 256;
/// Bucket for paths that matched no route (so scanners cannot grow the map).
pub const UNMATCHED_PATH: &str = "(unmatched)";
/// Bucket for matched paths beyond [`MAX_PATHS`].
pub const OTHER_PATH: &str = "(other)";
/// Request durations kept for the p95.
const RECENT: usize = 1024;
/// Routes that run user code.
const EXECUTION_PATHS: &[&str] = &[
    "/execute",
    "/execute/async",
    "/execute/background",
    "/execute/stream",
    "/commands/run",
    "/commands/background",
    "/commands/stream",
    "/stream",
];

/// Per-route figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PathStats {
    /// Requests answered.
    pub count: u64,
    /// Of which with status ≥ 400.
    pub errors: u64,
    /// Sum of durations, in milliseconds.
    pub total_ms: f64,
    /// Longest duration, in milliseconds.
    pub max_ms: f64,
}

impl PathStats {
    /// Mean duration in milliseconds.
    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }
}

/// A copy of the request counters.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    /// Requests answered.
    pub total: u64,
    /// Requests answered with status ≥ 400.
    pub errors: u64,
    /// Requests to routes that run user code.
    pub executions: u64,
    /// Such requests in flight.
    pub active_executions: u64,
    /// Per route template (`/execute/kill/{process_id}`, not the concrete path).
    pub paths: BTreeMap<String, PathStats>,
    /// 95th percentile of the last [`RECENT`] request durations, in milliseconds.
    pub p95_ms: f64,
}

struct Counters {
    total: u64,
    errors: u64,
    executions: u64,
    paths: BTreeMap<String, PathStats>,
    recent: VecDeque<f64>,
}

static COUNTERS: Mutex<Counters> = Mutex::new(Counters {
    total: 0,
    errors: 0,
    executions: 0,
    paths: BTreeMap::new(),
    recent: VecDeque::new(),
});
static ACTIVE_EXECUTIONS: AtomicU64 = AtomicU64::new(0);

fn counters() -> std::sync::MutexGuard<'static, Counters> {
    COUNTERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements the in-flight execution count even when the request future is dropped.
struct ActiveGuard;

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE_EXECUTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Middleware recording every request: count, errors and duration per route template.
pub async fn track(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_PATH.to_string(), |m| m.as_str().to_string());
    let execution = EXECUTION_PATHS.contains(&path.as_str());
    let _active = execution.then(|| {
        ACTIVE_EXECUTIONS.fetch_add(1, Ordering::Relaxed);
        ActiveGuard
    });
    let start = Instant::now();
    let response = next.run(req).await;
    record(
        &path,
        execution,
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

fn record(path: &str, execution: bool, status: u16, took: Duration) {
    let ms = took.as_secs_f64() * 1000.0;
    let mut c = counters();
    c.total += 1;
    let error = status >= 400;
    if error {
        c.errors += 1;
    }
    if execution {
        c.executions += 1;
    }
    let key = if c.paths.contains_key(path) || c.paths.len() < MAX_PATHS {
        path
    } else {
        OTHER_PATH
    };
    let entry = c.paths.entry(key.to_string()).or_default();
    entry.count += 1;
    entry.errors += u64::from(error);
    entry.total_ms += ms;
    entry.max_ms = entry.max_ms.max(ms);
    if c.recent.len() == RECENT {
        c.recent.pop_front();
    }
    c.recent.push_back(ms);
}

/// The request counters as they are now.
pub fn request_stats() -> RequestStats {
    let c = counters();
    let mut recent: Vec<f64> = c.recent.iter().copied().collect();
    recent.sort_by(f64::total_cmp);
    let p95_ms = if recent.is_empty() {
        0.0
    } else {
        let idx = ((recent.len() as f64) * 0.95).ceil() as usize;
        recent[idx.clamp(1, recent.len()) - 1]
    };
    RequestStats {
        total: c.total,
        errors: c.errors,
        executions: c.executions,
        active_executions: ACTIVE_EXECUTIONS.load(Ordering::Relaxed),
        paths: c.paths.clone(),
        p95_ms,
    }
}

/// Sandbox CPU figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuStats {
    /// Use over the last sampling interval, in percent of the sandbox's quota (0–100).
    pub usage_percent: f64,
    /// CPUs the sandbox may use (its vCPU quota).
    pub cores: u32,
}

/// Memory or disk figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Capacity.
    pub total: u64,
    /// In use.
    pub used: u64,
    /// Left.
    pub free: u64,
}

impl Usage {
    fn new(total: u64, used: u64) -> Self {
        Self {
            total,
            used: used.min(total),
            free: total.saturating_sub(used),
        }
    }

    /// `used` in percent of `total`.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            procfs::round2(self.used as f64 / self.total as f64 * 100.0)
        }
    }
}

/// Processes in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessCounts {
    /// All processes.
    pub count: usize,
    /// In state `R`.
    pub running: usize,
    /// Threads over all processes.
    pub threads: u64,
}

/// The sandbox's resource figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemStats {
    /// CPU.
    pub cpu: CpuStats,
    /// Memory: limit and resident sets.
    pub memory: Usage,
    /// The filesystem holding `/`.
    pub disk: Usage,
    /// Processes.
    pub processes: ProcessCounts,
}

/// The shortest interval a CPU figure is computed over.
const MIN_SAMPLE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    ticks: u64,
    percent: f64,
}

/// The agent's metrics state: its limits and the last CPU sample.
pub struct Metrics {
    /// Changes when a warm sandbox is adopted with other limits.
    resources: Mutex<Option<Resources>>,
    last_cpu: Mutex<Option<CpuSample>>,
}

impl Metrics {
    /// Empty counters.
    pub fn new(boot: &AgentBoot) -> Self {
        Self {
            resources: Mutex::new(boot.resources),
            last_cpu: Mutex::new(None),
        }
    }

    /// New limits (after adoption from the warm pool).
    pub fn set_resources(&self, r: Option<Resources>) {
        *self.resources.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    fn resources(&self) -> Option<Resources> {
        *self.resources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CPUs the sandbox may use: its quota, else what this process may run on.
    pub fn cores(&self) -> u32 {
        match &self.resources() {
            Some(r) if r.vcpu > 0 => r.vcpu,
            _ => std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }

    /// Memory the sandbox may use: its limit, else the host's (`/proc/meminfo`).
    pub fn memory_limit(&self) -> u64 {
        match &self.resources() {
            Some(r) if r.memory_mb > 0 => r.memory_mb * 1024 * 1024,
            _ => meminfo_total().unwrap_or(0),
        }
    }

    /// Samples everything. The first call waits [`MIN_SAMPLE`] to get a CPU figure; later
    /// calls compare with the previous sample (or reuse it if it is too recent).
    pub async fn system(&self) -> SystemStats {
        let procs = procfs::all();
        let processes = ProcessCounts {
            count: procs.len(),
            running: procs.iter().filter(|p| p.state == 'R').count(),
            threads: procs.iter().map(|p| p.threads).sum(),
        };
        let rss: u64 = procs.iter().map(|p| p.rss_bytes()).sum();
        let memory = Usage::new(self.memory_limit(), rss);
        let cpu = CpuStats {
            usage_percent: self.cpu_percent(ticks(&procs)).await,
            cores: self.cores(),
        };
        SystemStats {
            cpu,
            memory,
            disk: disk_usage("/"),
            processes,
        }
    }

    async fn cpu_percent(&self, now_ticks: u64) -> f64 {
        let now = Instant::now();
        let last = *self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let (from_at, from_ticks, to_at, to_ticks) = match last {
            Some(s) if now.duration_since(s.at) < MIN_SAMPLE => return s.percent,
            Some(s) => (s.at, s.ticks, now, now_ticks),
            None => {
                tokio::time::sleep(MIN_SAMPLE).await;
                (now, now_ticks, Instant::now(), ticks(&procfs::all()))
            }
        };
        let wall = to_at.duration_since(from_at).as_secs_f64();
        let used = to_ticks.saturating_sub(from_ticks) as f64 / procfs::clock_ticks() as f64;
        let percent = if wall > 0.0 {
            procfs::round2((used / wall / f64::from(self.cores()) * 100.0).clamp(0.0, 100.0))
        } else {
            0.0
        };
        *self.last_cpu.lock().unwrap_or_else(|e| e.into_inner()) = Some(CpuSample {
            at: to_at,
            ticks: to_ticks,
            percent,
        });
        percent
    }
}

/// CPU time of all processes and of the children they reaped: grows monotonically as the
/// sandbox works (a reaped process's time moves into its parent's `cutime`).
fn ticks(procs: &[procfs::ProcStat]) -> u64 {
    procs.iter().map(procfs::ProcStat::total_ticks).sum()
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Size and use of the filesystem holding `path`.
pub fn disk_usage(path: &str) -> Usage {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frsize = s.fragment_size();
            let total = s.blocks().saturating_mul(frsize);
            let free = s.blocks_available().saturating_mul(frsize);
            let used = s
                .blocks()
                .saturating_sub(s.blocks_free())
                .saturating_mul(frsize);
            Usage { total, used, free }
        }
        Err(_) => Usage::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_path_and_p95() {
        for i in 0..20 {
            record("/unit-test-path", false, 200, Duration::from_millis(i));
        }
        record("/unit-test-path", true, 404, Duration::from_millis(100));
        let s = request_stats();
        let p = s.paths["/unit-test-path"];
        assert_eq!(p.count, 21);
        assert_eq!(p.errors, 1);
        assert!(p.max_ms >= 100.0);
        assert!(s.total >= 21 && s.errors >= 1 && s.executions >= 1);
        assert!(s.p95_ms > 0.0);
    }

    #[test]
    fn usage_is_consistent() {
        let u = Usage::new(100, 150);
        assert_eq!((u.used, u.free), (100, 0));
        assert_eq!(Usage::new(200, 50).percent(), 25.0);
        assert!(disk_usage("/").total > 0);
    }
}
