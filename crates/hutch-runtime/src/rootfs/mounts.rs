//! Mount primitives with errors that name the operation and the path.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A failed mount-namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A path in the plan cannot be used.
    #[error("bad path {path:?}: {why}")]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },
    /// A syscall failed.
    #[error("{op} {path:?} failed")]
    Sys {
        /// The operation (`mount overlay`, `pivot_root`, …).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

pub(super) fn sys<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(nix::Error) -> MountError + 'a {
    move |e| MountError::Sys {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> MountError + 'a {
    move |source| MountError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Stops mount events propagating between this namespace and the host's.
pub(super) fn make_private_recursive(path: &Path) -> Result<(), MountError> {
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make private", path))
}

/// Mounts the overlay root. `index=off` lets many sandboxes share one lower layer.
pub(super) fn overlay(
    merged: &Path,
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<(), MountError> {
    let lowers: Vec<String> = lower
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(sys("mount overlay", merged))
}

/// Binds `source` at `target` (creating the mount point) and makes it read-only, nosuid, nodev.
pub(super) fn bind_read_only(source: &Path, target: &Path) -> Result<(), MountError> {
    ensure_mount_point(source, target)?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind", target))?;
    remount_read_only(target)
}

/// Remounts an existing bind mount read-only (nosuid, nodev).
pub(super) fn remount_read_only(target: &Path) -> Result<(), MountError> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(sys("remount read-only", target))
}

/// Creates `target` as a directory or an empty file, matching what `source` is.
pub(super) fn ensure_mount_point(source: &Path, target: &Path) -> Result<(), MountError> {
    if target.symlink_metadata().is_ok() {
        return Ok(());
    }
    let is_dir = std::fs::metadata(source)
        .map_err(io_err("stat", source))?
        .is_dir();
    if is_dir {
        std::fs::create_dir_all(target).map_err(io_err("mkdir", target))
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
        }
        std::fs::File::create(target)
            .map(drop)
            .map_err(io_err("create", target))
    }
}

/// Makes `new_root` the root and detaches the old one, so no host path stays reachable.
pub(super) fn pivot_into(new_root: &Path) -> Result<(), MountError> {
    nix::unistd::chdir(new_root).map_err(sys("chdir", new_root))?;
    // pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "."
    // then removes the old root without needing a directory to park it in.
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root", new_root))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root", Path::new("/")))?;
    nix::unistd::chdir("/").map_err(sys("chdir", Path::new("/")))
}
