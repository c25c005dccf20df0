//! The sandbox's root filesystem, assembled inside its fresh mount namespace.
//!
//! Runs in the cloned child while it is still real root (before it enters its user namespace),
//! so every mount is owned by the initial user namespace and sandbox root can neither unmount
//! nor remount any of it. Order: make `/` private (nothing propagates back to the host), overlay
//! root, read-only host binds, `/dev`, `/proc` with masks, then `pivot_root`.

mod dev;
mod mounts;
mod proc;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use mounts::MountError;

/// A host directory shown read-only inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
}

/// Everything the child needs to build its root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Where the overlay is assembled (inside the sandbox's directory on the host).
    pub merged: PathBuf,
    /// Read-only template layers, uppermost first.
    pub lower: Vec<PathBuf>,
    /// The sandbox's own writable layer (its files survive stop/start here).
    pub upper: PathBuf,
    /// overlayfs work directory, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Host directories to show read-only (the built-in template's `/usr`).
    pub binds: Vec<BindMount>,
    /// The sandbox's hostname.
    pub hostname: String,
}

impl RootfsPlan {
    /// Refuses paths overlayfs option strings cannot carry (',' ':' and '\\' separate options
    /// and layers there) and relative paths.
    pub fn validate(&self) -> Result<(), MountError> {
        let all = self
            .lower
            .iter()
            .chain([&self.upper, &self.work, &self.merged]);
        for p in all {
            check_path(p)?;
        }
        for b in &self.binds {
            check_path(&b.source)?;
            check_path(&b.target)?;
        }
        if self.lower.is_empty() {
            return Err(MountError::BadPath {
                path: PathBuf::new(),
                why: "a template needs at least one layer",
            });
        }
        Ok(())
    }
}

fn check_path(p: &Path) -> Result<(), MountError> {
    let s = p.to_string_lossy();
    if !p.is_absolute() {
        return Err(MountError::BadPath {
            path: p.to_path_buf(),
            why: "must be absolute",
        });
    }
    if s.contains([',', ':', '\\', '\n']) {
        return Err(MountError::BadPath {
            path: p.to_path_buf(),
            why: "must not contain ',', ':', '\\' or a newline",
        });
    }
    Ok(())
}

/// Builds the root described by `plan` and pivots into it. Afterwards `/` is the sandbox root
/// and the host's filesystem is unreachable.
pub fn build(plan: &RootfsPlan) -> Result<(), MountError> {
    plan.validate()?;
    mounts::make_private_recursive(Path::new("/"))?;
    mounts::overlay(&plan.merged, &plan.lower, &plan.upper, &plan.work)?;
    for b in &plan.binds {
        let target = inside(&plan.merged, &b.target);
        mounts::bind_read_only(&b.source, &target)?;
    }
    dev::populate(&plan.merged.join("dev"))?;
    proc::mount_masked(&plan.merged.join("proc"), &plan.merged.join("dev/null"))?;
    mounts::pivot_into(&plan.merged)?;
    nix::unistd::sethostname(&plan.hostname).map_err(|e| MountError::Sys {
        op: "sethostname",
        path: PathBuf::from(&plan.hostname),
        source: e.into(),
    })?;
    Ok(())
}

/// `target` (absolute, as seen in the sandbox) below `root` on the host.
fn inside(root: &Path, target: &Path) -> PathBuf {
    root.join(target.strip_prefix("/").unwrap_or(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_paths_are_checked() {
        let mut plan = RootfsPlan {
            merged: "/d/merged".into(),
            lower: vec!["/t/rootfs".into()],
            upper: "/d/upper".into(),
            work: "/d/work".into(),
            binds: vec![],
            hostname: "sandbox".into(),
        };
        plan.validate().unwrap();
        plan.lower = vec!["/t/a,upperdir=/etc".into()];
        assert!(plan.validate().is_err());
        plan.lower = vec!["relative".into()];
        assert!(plan.validate().is_err());
        plan.lower = vec![];
        assert!(plan.validate().is_err());
    }

    #[test]
    fn inside_joins_absolute_targets() {
        assert_eq!(
            inside(Path::new("/m"), Path::new("/usr")),
            PathBuf::from("/m/usr")
        );
    }
}
