//! One sandbox's cgroup across the hierarchies: limits, membership, freeze, kill, usage.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hutch_types::Resources;

use super::{CgroupError, CgroupLayout, HierarchyKind};

/// CFS period used for CPU quotas (the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// A sandbox's cgroup directories, one per hierarchy in use.
#[derive(Debug, Clone)]
pub struct SandboxCgroup {
    dirs: Vec<(HierarchyKind, PathBuf)>,
    unified_controllers: bool,
}

/// Resource use read from the cgroup files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Memory in use, bytes (page cache included, as the kernel charges it).
    pub memory_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// CPU time used, microseconds.
    pub cpu_usec: u64,
    /// Processes and threads alive.
    pub pids: u64,
    /// Times the OOM killer fired in this group.
    pub oom_kills: u64,
}

impl SandboxCgroup {
    pub(super) fn new(layout: &CgroupLayout, parent: &str, id: &str) -> Self {
        let dirs = layout
            .hierarchies()
            .into_iter()
            .map(|h| (h.kind, h.own.join(parent).join(id)))
            .collect();
        Self {
            dirs,
            unified_controllers: layout.is_unified(),
        }
    }

    fn dir(&self, kind: HierarchyKind) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| d.as_path())
    }

    /// The `cgroup.procs` files a process writes its pid to, to join the sandbox's groups.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    /// True if every group directory exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().all(|(_, d)| d.is_dir())
    }

    /// True if any group directory exists (enough to hold processes that must be killed).
    pub fn any_exists(&self) -> bool {
        self.dirs.iter().any(|(_, d)| d.is_dir())
    }

    /// The directories, to record in the sandbox's state: which groups a sandbox is in must not
    /// depend on the cgroup of whichever process later drives it (a restarted server or `hutch
    /// purge` may sit in another v1 memory group than the server that created it).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    pub(super) fn from_parts(
        dirs: Vec<(HierarchyKind, PathBuf)>,
        unified_controllers: bool,
    ) -> Self {
        Self {
            dirs,
            unified_controllers,
        }
    }

    pub(super) fn create(&self, r: &Resources) -> Result<(), CgroupError> {
        for (kind, dir) in &self.dirs {
            if *kind == HierarchyKind::Unified && self.unified_controllers {
                enable_controllers(dir)?;
            }
            // A concurrent `remove_parent_if_empty` may remove the parent between our mkdirs;
            // creating the whole path again is the cure.
            let mut tries = 0;
            loop {
                match fs::create_dir_all(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
                    Err(source) => {
                        return Err(CgroupError::Create {
                            path: dir.clone(),
                            source,
                        })
                    }
                }
            }
        }
        self.set_limits(r)
    }

    /// Writes the limits. Memory is ordered so that memory+swap never drops below memory (v1
    /// refuses that), whichever way the limit moves.
    pub fn set_limits(&self, r: &Resources) -> Result<(), CgroupError> {
        let mem = r.memory_mb * 1024 * 1024;
        let quota = u64::from(r.vcpu) * CPU_PERIOD_US;
        if self.unified_controllers {
            let d = self.dir(HierarchyKind::Unified).unwrap_or(Path::new("/"));
            write(d, "memory.max", &mem.to_string())?;
            // Swap is counted separately on v2; none keeps "memory + swap" at the limit.
            write_optional(d, "memory.swap.max", "0")?;
            write(d, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
            write(d, "pids.max", &r.pids.to_string())?;
        } else {
            if let Some(d) = self.dir(HierarchyKind::Memory) {
                let current = read_u64(d, "memory.limit_in_bytes").unwrap_or(u64::MAX);
                let order: [&str; 2] = if mem > current {
                    ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
                } else {
                    ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
                };
                for file in order {
                    // memsw exists only with swap accounting.
                    write_optional(d, file, &mem.to_string())?;
                }
            }
            if let Some(d) = self.dir(HierarchyKind::Cpu) {
                write(d, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                write(d, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if let Some(d) = self.dir(HierarchyKind::Pids) {
                write(d, "pids.max", &r.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves `pid` into every group of the sandbox.
    pub fn join(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Pids of the processes in the group (from the freeze/kill hierarchy).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self.control_dir();
        let text = read(dir, "cgroup.procs")?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// The directory whose files drive freeze and kill.
    fn control_dir(&self) -> &Path {
        self.dir(HierarchyKind::Unified)
            .or_else(|| self.dir(HierarchyKind::Freezer))
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()))
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// Freezes every process; returns once the kernel reports the group frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws the group; returns once the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let state = if frozen { "frozen" } else { "thawed" };
        if let Some(d) = self.dir(HierarchyKind::Unified) {
            write(d, "cgroup.freeze", if frozen { "1" } else { "0" })?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            return wait_for(d, "cgroup.events", state, |s| {
                s.lines().any(|l| l.trim() == want)
            });
        }
        let d = self.control_dir();
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write(d, "freezer.state", want)?;
        wait_for(d, "freezer.state", state, |s| s.trim() == want)
    }

    /// True if the group is frozen.
    pub fn is_frozen(&self) -> bool {
        if let Some(d) = self.dir(HierarchyKind::Unified) {
            return read(d, "cgroup.freeze")
                .map(|s| s.trim() == "1")
                .unwrap_or(false);
        }
        read(self.control_dir(), "freezer.state")
            .map(|s| s.trim() == "FROZEN")
            .unwrap_or(false)
    }

    /// SIGKILLs every process in the group (frozen ones too) and waits until it is empty.
    pub fn kill(&self, wait: Duration) -> Result<(), CgroupError> {
        if !self.control_dir().exists() {
            return Ok(());
        }
        if let Some(d) = self.dir(HierarchyKind::Unified) {
            match write(d, "cgroup.kill", "1") {
                Ok(()) => return self.wait_empty(wait),
                // Kernels before 5.14 have no cgroup.kill: fall through to the signal loop.
                Err(CgroupError::Write { source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        || source.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        // Without cgroup.kill: freeze so nothing can fork away, kill everyone, thaw so the
        // signals are delivered, and repeat until empty.
        let start = Instant::now();
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            let _ = self.freeze();
            for pid in pids {
                // SAFETY: kill(2) with a pid read from the group and a constant signal has no
                // memory-safety preconditions; ESRCH for an already-dead pid is fine.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = self.thaw();
            if start.elapsed() > wait {
                return self.wait_empty(Duration::ZERO);
            }
            sleep(Duration::from_millis(1));
        }
    }

    /// Waits until no process is left in the group.
    pub fn wait_empty(&self, wait: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        let d = self.control_dir();
        loop {
            let empty = if self.dir(HierarchyKind::Unified).is_some() {
                read(d, "cgroup.events")?
                    .lines()
                    .any(|l| l.trim() == "populated 0")
            } else {
                read(d, "cgroup.procs")?.trim().is_empty()
            };
            if empty {
                return Ok(());
            }
            if start.elapsed() >= wait {
                return Err(CgroupError::NotEmpty {
                    path: d.to_path_buf(),
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            sleep(Duration::from_micros(500));
        }
    }

    /// Removes the group directories. Missing ones are fine; a busy one is retried briefly,
    /// because the kernel takes a moment to release a group whose last task just exited.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            let start = Instant::now();
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && start.elapsed() < Duration::from_secs(2) =>
                    {
                        sleep(Duration::from_millis(1));
                    }
                    Err(source) => {
                        return Err(CgroupError::Remove {
                            path: dir.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads memory, CPU and process counts.
    pub fn usage(&self) -> Result<CgroupUsage, CgroupError> {
        let mut u = CgroupUsage::default();
        if self.unified_controllers {
            let d = self.control_dir();
            u.memory_bytes = read_u64(d, "memory.current")?;
            u.memory_limit_bytes = read_u64(d, "memory.max").unwrap_or(u64::MAX);
            u.pids = read_u64(d, "pids.current")?;
            u.oom_kills = keyed(d, "memory.events", "oom_kill").unwrap_or(0);
        } else {
            if let Some(d) = self.dir(HierarchyKind::Memory) {
                u.memory_bytes = read_u64(d, "memory.usage_in_bytes")?;
                u.memory_limit_bytes = read_u64(d, "memory.limit_in_bytes")?;
                u.oom_kills = keyed(d, "memory.oom_control", "oom_kill").unwrap_or(0);
            }
            if let Some(d) = self.dir(HierarchyKind::Pids) {
                u.pids = read_u64(d, "pids.current")?;
            }
        }
        // cpu.stat's usage_usec is a core v2 file, present even without the cpu controller.
        if let Some(d) = self.dir(HierarchyKind::Unified) {
            u.cpu_usec = keyed(d, "cpu.stat", "usage_usec").unwrap_or(0);
        }
        Ok(u)
    }
}

/// Polls `dir/file` until `done` holds for its content; the kernel needs up to a few ms to
/// freeze or thaw every task of a group.
fn wait_for(
    dir: &Path,
    file: &str,
    state: &'static str,
    done: impl Fn(&str) -> bool,
) -> Result<(), CgroupError> {
    let deadline = Duration::from_secs(5);
    let start = Instant::now();
    loop {
        if done(&read(dir, file)?) {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
                state,
                waited_ms: deadline.as_millis() as u64,
            });
        }
        sleep(Duration::from_micros(200));
    }
}

fn enable_controllers(leaf: &Path) -> Result<(), CgroupError> {
    // Every ancestor between the server's own group and the sandbox must delegate the
    // controllers; the sandbox dir's parent is `hutch-<instance>`, its grandparent our own group.
    let Some(parent) = leaf.parent() else {
        return Ok(());
    };
    let own = parent.parent().unwrap_or(parent);
    fs::create_dir_all(parent).map_err(|source| CgroupError::Create {
        path: parent.to_path_buf(),
        source,
    })?;
    for dir in [own, parent] {
        write(dir, "cgroup.subtree_control", "+memory +cpu +pids")?;
    }
    Ok(())
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Writes a file that only some kernels have.
fn write_optional(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    match write(dir, file, value) {
        Err(CgroupError::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file)?;
    Ok(s.trim().parse().unwrap_or(u64::MAX))
}

fn keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    read(dir, file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::super::CgroupManager;
    use super::*;

    /// A real group on this host: limits are written, a process joins, freeze stops it, kill
    /// empties the group, and removal leaves nothing.
    #[test]
    fn real_group_lifecycle() {
        let mgr = CgroupManager::detect("unit-group").unwrap();
        let limits = Resources {
            memory_mb: 128,
            pids: 64,
            ..Resources::default()
        };
        let group = mgr.create("cg-test-1", &limits).unwrap();
        assert!(group.exists());

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        group.join(child.id() as i32).unwrap();
        assert_eq!(group.pids().unwrap(), vec![child.id() as i32]);

        let u = group.usage().unwrap();
        assert_eq!(u.memory_limit_bytes, 128 * 1024 * 1024);
        assert_eq!(u.pids, 1);

        group.freeze().unwrap();
        assert!(group.is_frozen());
        group.thaw().unwrap();
        assert!(!group.is_frozen());

        group.kill(Duration::from_secs(5)).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        group.remove().unwrap();
        assert!(!group.exists());
        mgr.remove_parent_if_empty();
        for h in mgr.layout().hierarchies() {
            assert!(!h.own.join("hutch-unit-group").exists());
        }
    }

    /// Limits can be raised and lowered on a live group.
    #[test]
    fn limits_can_move_both_ways() {
        let mgr = CgroupManager::detect("unit-limits").unwrap();
        let small = Resources {
            memory_mb: 96,
            ..Resources::default()
        };
        let group = mgr.create("cg-limits", &small).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        group.join(child.id() as i32).unwrap();
        for mb in [512, 128, 2048, 64] {
            group
                .set_limits(&Resources {
                    memory_mb: mb,
                    ..Resources::default()
                })
                .unwrap();
            assert_eq!(group.usage().unwrap().memory_limit_bytes, mb * 1024 * 1024);
        }
        group.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        group.remove().unwrap();
        mgr.remove_parent_if_empty();
    }
}
