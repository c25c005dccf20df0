//! cgroups for sandboxes, on whatever layout the host has.
//!
//! Limits (memory + swap, CPU quota, pids) go to the v1 controllers on legacy and hybrid hosts
//! and to the v2 controllers on unified hosts. Freeze and kill use the v2 hierarchy's
//! `cgroup.freeze` and `cgroup.kill` wherever a v2 hierarchy is mounted — on hybrid hosts too,
//! where it carries no controllers but those two files still work — and fall back to the v1
//! freezer otherwise. Every sandbox gets `<own cgroup>/hutch-<instance>/<sandbox id>` in each
//! hierarchy, created below the server's *own* cgroup because the server may itself be confined
//! (on this kind of host, in a non-root v1 memory cgroup with `use_hierarchy=1`).
//!
//! youki's `libcgroups` was considered: its hybrid manager drives the v1 freezer and has no
//! `cgroup.kill`, and it takes OCI `LinuxResources` as input; what hutch needs is four files per
//! controller, so the layout detection and the writes live here.

mod detect;
mod group;

pub use detect::{CgroupLayout, Hierarchy, HierarchyKind};
pub use group::{CgroupUsage, SandboxCgroup};

use std::io;
use std::path::PathBuf;

use hutch_types::Resources;

/// Errors from cgroup set-up and control; each names the file it was touching.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/mountinfo` or `/proc/self/cgroup` could not be read.
    #[error("cannot read {path}")]
    ReadProc {
        /// The proc file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A controller hutch needs is not mounted anywhere.
    #[error("the {0} cgroup controller is not available on this host")]
    MissingController(&'static str),
    /// Creating a cgroup directory failed.
    #[error("cannot create cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a control file failed.
    #[error("cannot write {value:?} to {path}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a control file failed.
    #[error("cannot read {path}")]
    Read {
        /// The control file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("cannot remove cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Processes were still alive after the deadline.
    #[error("cgroup {path} still has processes after {waited_ms} ms")]
    NotEmpty {
        /// The cgroup.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The freezer did not reach the wanted state in time.
    #[error("cgroup {path} did not become {state} within {waited_ms} ms")]
    FreezeTimeout {
        /// The cgroup.
        path: PathBuf,
        /// `frozen` or `thawed`.
        state: &'static str,
        /// How long we waited.
        waited_ms: u64,
    },
}

/// Creates and finds the cgroups of one hutch instance's sandboxes.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: CgroupLayout,
    /// `hutch-<instance>`: one parent per server instance, so two servers (or two test runs)
    /// never touch each other's groups.
    parent: String,
}

impl CgroupManager {
    /// Detects the host layout from `/proc/self/{mountinfo,cgroup}`.
    pub fn detect(instance: &str) -> Result<Self, CgroupError> {
        Ok(Self {
            layout: CgroupLayout::detect()?,
            parent: format!("hutch-{instance}"),
        })
    }

    /// The detected layout.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The sandbox's cgroup, whether or not it exists yet.
    pub fn sandbox(&self, id: &str) -> SandboxCgroup {
        SandboxCgroup::new(&self.layout, &self.parent, id)
    }

    /// A sandbox's groups from directories recorded earlier; each directory is matched to the
    /// hierarchy mounted above it.
    pub fn from_dirs(&self, dirs: &[PathBuf]) -> SandboxCgroup {
        let parts = dirs
            .iter()
            .filter_map(|d| {
                self.layout
                    .hierarchies()
                    .into_iter()
                    .filter(|h| d.starts_with(&h.mount))
                    // The deepest mount wins (`/sys/fs/cgroup/unified` over `/sys/fs/cgroup`).
                    .max_by_key(|h| h.mount.as_os_str().len())
                    .map(|h| (h.kind, d.clone()))
            })
            .collect();
        SandboxCgroup::from_parts(parts, self.layout.is_unified())
    }

    /// The groups a live process is in, read from `/proc/PID/cgroup` — the truth for sandboxes
    /// whose state predates recorded directories.
    pub fn of_process(&self, pid: i32) -> Option<SandboxCgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mut dirs = Vec::new();
        for h in self.layout.hierarchies() {
            let wanted = match h.kind {
                HierarchyKind::Memory => Some("memory"),
                HierarchyKind::Cpu => Some("cpu"),
                HierarchyKind::Pids => Some("pids"),
                HierarchyKind::Freezer => Some("freezer"),
                HierarchyKind::Unified => None,
            };
            let path = text.lines().find_map(|l| {
                let mut it = l.splitn(3, ':');
                let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
                let hit = match wanted {
                    None => ctrls.is_empty(),
                    Some(c) => ctrls.split(',').any(|x| x == c),
                };
                hit.then(|| path.to_string())
            })?;
            dirs.push(h.mount.join(path.trim_start_matches('/')));
        }
        Some(self.from_dirs(&dirs))
    }

    /// Creates the sandbox's cgroups and writes its limits. On failure nothing is left behind.
    pub fn create(&self, id: &str, limits: &Resources) -> Result<SandboxCgroup, CgroupError> {
        let group = self.sandbox(id);
        if let Err(e) = group.create(limits) {
            // Best effort: the error we return is the creation error.
            let _ = group.remove();
            return Err(e);
        }
        Ok(group)
    }

    /// Removes the instance's parent directories if no sandbox cgroup is left in them.
    pub fn remove_parent_if_empty(&self) {
        for h in self.layout.hierarchies() {
            let dir = h.own_dir().join(&self.parent);
            // rmdir fails harmlessly (EBUSY/ENOTEMPTY) while a sandbox group still exists.
            let _ = std::fs::remove_dir(dir);
        }
    }
}
