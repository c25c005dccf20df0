//! Which cgroup hierarchies the host mounts, and where this process sits in each.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// What a hierarchy is used for by hutch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HierarchyKind {
    /// v1 `memory` controller.
    Memory,
    /// v1 `cpu` controller (possibly co-mounted with cpuacct).
    Cpu,
    /// v1 `pids` controller.
    Pids,
    /// v1 `freezer` controller, used only when no v2 hierarchy is mounted.
    Freezer,
    /// The v2 hierarchy: every controller on unified hosts, only freeze/kill/stat on hybrid ones.
    Unified,
}

/// One mounted hierarchy and this process's cgroup in it.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// Its use.
    pub kind: HierarchyKind,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// This process's cgroup directory inside it.
    pub own: PathBuf,
}

impl Hierarchy {
    /// This process's cgroup directory.
    pub fn own_dir(&self) -> &Path {
        &self.own
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    hierarchies: BTreeMap<HierarchyKind, Hierarchy>,
    /// True when the v2 hierarchy holds the controllers (a unified host).
    unified_controllers: bool,
}

impl CgroupLayout {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Result<Self, CgroupError> {
        let mountinfo = read("/proc/self/mountinfo")?;
        let cgroup = read("/proc/self/cgroup")?;
        let unified_controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|s| s.split_whitespace().any(|c| c == "memory"))
            .unwrap_or(false);
        Self::from_proc(&mountinfo, &cgroup, unified_controllers)
    }

    /// The parsing half of [`detect`](Self::detect), for tests.
    pub fn from_proc(
        mountinfo: &str,
        proc_cgroup: &str,
        unified_controllers: bool,
    ) -> Result<Self, CgroupError> {
        // Own path per v1 controller name, and for v2 ("" controllers, hierarchy 0).
        let mut own_v1: BTreeMap<String, String> = BTreeMap::new();
        let mut own_v2: Option<String> = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                own_v2 = Some(path.to_string());
            } else {
                for c in ctrls.split(',') {
                    own_v1.insert(c.to_string(), path.to_string());
                }
            }
        }

        let mut hierarchies = BTreeMap::new();
        for line in mountinfo.lines() {
            // mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let (root, mountpoint) = (unescape(left[3]), PathBuf::from(unescape(left[4])));
            match right[0] {
                "cgroup2" => {
                    let Some(own) = &own_v2 else { continue };
                    let h = Hierarchy {
                        kind: HierarchyKind::Unified,
                        own: join_own(&mountpoint, &root, own),
                        mount: mountpoint,
                    };
                    hierarchies.entry(HierarchyKind::Unified).or_insert(h);
                }
                "cgroup" => {
                    for opt in right[2].split(',') {
                        let kind = match opt {
                            "memory" => HierarchyKind::Memory,
                            "cpu" => HierarchyKind::Cpu,
                            "pids" => HierarchyKind::Pids,
                            "freezer" => HierarchyKind::Freezer,
                            _ => continue,
                        };
                        let Some(own) = own_v1.get(opt) else { continue };
                        let h = Hierarchy {
                            kind,
                            own: join_own(&mountpoint, &root, own),
                            mount: mountpoint.clone(),
                        };
                        hierarchies.entry(kind).or_insert(h);
                    }
                }
                _ => {}
            }
        }

        let layout = Self {
            hierarchies,
            unified_controllers,
        };
        if !layout.unified_controllers {
            for (kind, name) in [
                (HierarchyKind::Memory, "memory"),
                (HierarchyKind::Cpu, "cpu"),
                (HierarchyKind::Pids, "pids"),
            ] {
                if !layout.hierarchies.contains_key(&kind) {
                    return Err(CgroupError::MissingController(name));
                }
            }
            if !layout.hierarchies.contains_key(&HierarchyKind::Unified)
                && !layout.hierarchies.contains_key(&HierarchyKind::Freezer)
            {
                return Err(CgroupError::MissingController("freezer"));
            }
        } else if !layout.hierarchies.contains_key(&HierarchyKind::Unified) {
            return Err(CgroupError::MissingController("cgroup2"));
        }
        Ok(layout)
    }

    /// True on unified (pure v2) hosts.
    pub fn is_unified(&self) -> bool {
        self.unified_controllers
    }

    /// A short name for logs: `unified`, `hybrid` or `legacy`.
    pub fn describe(&self) -> &'static str {
        match (
            self.unified_controllers,
            self.hierarchies.contains_key(&HierarchyKind::Unified),
        ) {
            (true, _) => "unified",
            (false, true) => "hybrid",
            (false, false) => "legacy",
        }
    }

    /// The hierarchy used for `kind`, if mounted.
    pub fn get(&self, kind: HierarchyKind) -> Option<&Hierarchy> {
        self.hierarchies.get(&kind)
    }

    /// The hierarchies a sandbox gets a group in: on unified hosts only the v2 one; otherwise the
    /// v1 limit controllers plus v2 (or the v1 freezer when there is no v2).
    pub fn hierarchies(&self) -> Vec<&Hierarchy> {
        let kinds: &[HierarchyKind] = if self.unified_controllers {
            &[HierarchyKind::Unified]
        } else if self.hierarchies.contains_key(&HierarchyKind::Unified) {
            &[
                HierarchyKind::Memory,
                HierarchyKind::Cpu,
                HierarchyKind::Pids,
                HierarchyKind::Unified,
            ]
        } else {
            &[
                HierarchyKind::Memory,
                HierarchyKind::Cpu,
                HierarchyKind::Pids,
                HierarchyKind::Freezer,
            ]
        };
        kinds
            .iter()
            .filter_map(|k| self.hierarchies.get(k))
            .collect()
    }
}

fn read(path: &str) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::ReadProc {
        path: path.into(),
        source,
    })
}

/// `own` is relative to the hierarchy's root; the mount shows the subtree at `root`.
fn join_own(mountpoint: &Path, root: &str, own: &str) -> PathBuf {
    let rel = own.strip_prefix(root).unwrap_or(own);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        mountpoint.to_path_buf()
    } else {
        mountpoint.join(rel)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(char::from(v));
                i += 4;
                continue;
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu
37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,pids
38 30 0:34 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,freezer";
    const HYBRID_CGROUP: &str = "\
8:pids:/
6:freezer:/
4:memory:/process_api/abc
1:cpu:/
0::/";

    #[test]
    fn hybrid_layout_puts_memory_below_own_group() {
        let l = CgroupLayout::from_proc(HYBRID_MOUNTINFO, HYBRID_CGROUP, false).unwrap();
        assert_eq!(l.describe(), "hybrid");
        assert_eq!(
            l.get(HierarchyKind::Memory).unwrap().own,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            l.get(HierarchyKind::Unified).unwrap().own,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        let kinds: Vec<_> = l.hierarchies().iter().map(|h| h.kind).collect();
        assert_eq!(
            kinds,
            vec![
                HierarchyKind::Memory,
                HierarchyKind::Cpu,
                HierarchyKind::Pids,
                HierarchyKind::Unified
            ]
        );
    }

    #[test]
    fn unified_layout() {
        let mi = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw";
        let l = CgroupLayout::from_proc(mi, "0::/user.slice/x.scope", true).unwrap();
        assert_eq!(l.describe(), "unified");
        assert_eq!(
            l.hierarchies()[0].own,
            PathBuf::from("/sys/fs/cgroup/user.slice/x.scope")
        );
    }

    #[test]
    fn missing_controller_is_named() {
        let mi = "35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        let err = CgroupLayout::from_proc(mi, "4:memory:/", false).unwrap_err();
        assert!(err.to_string().contains("cpu"), "{err}");
    }

    #[test]
    fn this_host_is_detected() {
        let l = CgroupLayout::detect().unwrap();
        assert!(!l.hierarchies().is_empty());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
