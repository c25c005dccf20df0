//! Whole-tree operations on template roots: cloning a cached base with hard links, flattening a
//! build sandbox's overlay upper layer into the root, removing trees.
//!
//! Why flatten rather than stack the build's upper layer as a second lower layer: a template is
//! then one self-contained directory (`<data_dir>/templates/<name>/<version>/rootfs`), deleted
//! with one `rm -r`, and every sandbox made from it mounts a single-layer overlay like the
//! built-in template — no stack that grows with every build step, and no shared base a cache
//! clean-up could pull from under a template. The price, a clone of the base, is paid with hard
//! links (about a second for 10,000 entries) instead of a copy.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::{invalid, io_err, xattrs, TemplateError};

/// What a clone did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CloneStats {
    /// Directories created.
    pub dirs: u64,
    /// Entries hard-linked.
    pub linked: u64,
    /// Entries copied (the source was on another filesystem).
    pub copied: u64,
}

/// Makes `dst` (which must not exist) a copy of the tree `src`: directories are created with
/// the same mode, owner and attributes; everything else is hard-linked, or copied when `src`
/// lives on another filesystem. Symlinks are never followed.
///
/// The clone shares inodes with `src`, so it must only ever be changed by replacing entries
/// (unlink + create, rename), never by writing into a file — which is how every function of
/// this module and of [`super::files`] changes a root, and how overlayfs treats a lower layer.
pub fn clone_tree(src: &Path, dst: &Path) -> Result<CloneStats, TemplateError> {
    let mut stats = CloneStats::default();
    let dev = fs::symlink_metadata(src)
        .map_err(io_err("stat", src))?
        .dev();
    clone_dir(src, dst, dev, &mut stats)?;
    Ok(stats)
}

fn clone_dir(
    src: &Path,
    dst: &Path,
    dev: u64,
    stats: &mut CloneStats,
) -> Result<(), TemplateError> {
    let m = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    fs::create_dir(dst).map_err(io_err("mkdir", dst))?;
    stats.dirs += 1;
    for entry in fs::read_dir(src).map_err(io_err("readdir", src))? {
        let entry = entry.map_err(io_err("readdir", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let em = fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
        if em.is_dir() {
            if em.dev() != dev {
                // A mount point inside the tree (never in a finished root): keep it empty.
                fs::create_dir(&to).map_err(io_err("mkdir", &to))?;
                continue;
            }
            clone_dir(&from, &to, dev, stats)?;
            continue;
        }
        match fs::hard_link(&from, &to) {
            Ok(()) => stats.linked += 1,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                copy_entry(&from, &to, &em)?;
                stats.copied += 1;
            }
            Err(e) => return Err(io_err("link", &to)(e)),
        }
    }
    copy_dir_meta(src, dst, &m)
}

/// Copies a non-directory entry (file, symlink; others skipped) with owner, mode and attributes.
fn copy_entry(from: &Path, to: &Path, m: &fs::Metadata) -> Result<(), TemplateError> {
    let ft = m.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(io_err("readlink", from))?;
        symlink(&target, to).map_err(io_err("symlink", to))?;
        return lchown(to, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", to));
    }
    if !ft.is_file() {
        return Ok(());
    }
    fs::copy(from, to).map_err(io_err("copy", from))?;
    lchown(to, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(io_err("chmod", to))?;
    xattrs::copy_except_overlay(from, to)
}

fn copy_dir_meta(src: &Path, dst: &Path, m: &fs::Metadata) -> Result<(), TemplateError> {
    lchown(dst, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(io_err("chmod", dst))?;
    xattrs::copy_except_overlay(src, dst)
}

/// Removes a tree; a missing one is fine.
pub fn remove_tree(path: &Path) -> Result<(), TemplateError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("stat", path)(e)),
    }
}

/// What flattening an upper layer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergeStats {
    /// Files, symlinks and other entries moved into the root.
    pub moved: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Paths deleted by whiteouts or opaque directories.
    pub removed: u64,
}

/// True for an overlayfs whiteout: a character device 0/0.
fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Applies an overlayfs upper layer to its (sole) lower layer `root`, so `root` afterwards looks
/// like the merged view did: whiteouts delete, opaque directories replace the lower directory's
/// contents, everything else is moved in (renamed when on the same filesystem, which the
/// sandbox and template directories are). `exclude` names top-level paths (relative, e.g.
/// `var/lib/hutch-agent`) whose changes are dropped: the build sandbox's own agent state.
///
/// The overlay must be unmounted (its sandbox stopped). `upper` is consumed.
pub fn merge_upper(
    upper: &Path,
    root: &Path,
    exclude: &[&str],
) -> Result<MergeStats, TemplateError> {
    let mut stats = MergeStats::default();
    merge_dir(upper, root, Path::new(""), exclude, &mut stats)?;
    Ok(stats)
}

fn merge_dir(
    upper: &Path,
    root: &Path,
    rel: &Path,
    exclude: &[&str],
    stats: &mut MergeStats,
) -> Result<(), TemplateError> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("readdir", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err("readdir", &dir))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        if exclude.iter().any(|x| Path::new(x) == r) {
            continue;
        }
        let from = upper.join(&r);
        let to = root.join(&r);
        let m = fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
        if is_whiteout(&m) {
            if fs::symlink_metadata(&to).is_ok() {
                remove_tree(&to)?;
                stats.removed += 1;
            }
            continue;
        }
        for attr in ["redirect", "metacopy"] {
            let key = format!("{}{attr}", xattrs::OVERLAY_PREFIX);
            if xattrs::get(&from, &key)?.is_some() {
                return Err(invalid(
                    &from,
                    format!("overlay {attr} entries cannot be flattened (mount option enabled?)"),
                ));
            }
        }
        if m.is_dir() {
            let opaque = xattrs::get(&from, &format!("{}opaque", xattrs::OVERLAY_PREFIX))?
                .is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&to) {
                Ok(tm) if tm.is_dir() => {
                    if opaque {
                        for e in fs::read_dir(&to).map_err(io_err("readdir", &to))? {
                            let e = e.map_err(io_err("readdir", &to))?;
                            remove_tree(&e.path())?;
                            stats.removed += 1;
                        }
                    }
                }
                Ok(_) => {
                    remove_tree(&to)?;
                    fs::create_dir(&to).map_err(io_err("mkdir", &to))?;
                }
                Err(_) => fs::create_dir(&to).map_err(io_err("mkdir", &to))?,
            }
            merge_dir(upper, root, &r, exclude, stats)?;
            copy_dir_meta(&from, &to, &m)?;
            stats.dirs += 1;
            continue;
        }
        if fs::symlink_metadata(&to).is_ok() {
            remove_tree(&to)?;
        }
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_entry(&from, &to, &m)?,
            Err(e) => return Err(io_err("rename", &to)(e)),
        }
        if !m.file_type().is_symlink() {
            xattrs::strip_overlay(&to)?;
        }
        stats.moved += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_inodes_and_keep_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/a"), b"a").unwrap();
        symlink("/etc/a", src.join("abs")).unwrap();
        fs::set_permissions(src.join("etc/sub"), fs::Permissions::from_mode(0o710)).unwrap();
        let dst = dir.path().join("dst");
        let s = clone_tree(&src, &dst).unwrap();
        assert_eq!(s.dirs, 3);
        assert_eq!(s.linked, 2);
        let a = fs::metadata(src.join("etc/a")).unwrap();
        let b = fs::metadata(dst.join("etc/a")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::metadata(dst.join("etc/sub")).unwrap().mode() & 0o7777,
            0o710
        );
        assert_eq!(fs::read_link(dst.join("abs")).unwrap(), Path::new("/etc/a"));
    }

    /// Needs root: whiteouts are device nodes and opaque markers `trusted.*` attributes.
    #[test]
    fn upper_layers_flatten_like_overlayfs() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let upper = dir.path().join("upper");
        for d in ["etc/old", "opt/keep", "var/lib/hutch-agent"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/gone"), b"x").unwrap();
        fs::write(root.join("etc/old/f"), b"old").unwrap();
        fs::write(root.join("etc/changed"), b"before").unwrap();
        fs::write(root.join("opt/keep/k"), b"k").unwrap();
        let cache_copy = dir.path().join("cache-changed");
        fs::hard_link(root.join("etc/changed"), &cache_copy).unwrap();

        fs::create_dir_all(upper.join("etc/old")).unwrap();
        fs::create_dir_all(upper.join("new/deep")).unwrap();
        fs::create_dir_all(upper.join("var/lib/hutch-agent")).unwrap();
        fs::write(upper.join("var/lib/hutch-agent/env.json"), b"{}").unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        xattrs::set(&upper.join("etc/old"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(upper.join("etc/old/g"), b"g").unwrap();
        fs::write(upper.join("etc/changed"), b"after").unwrap();
        xattrs::set(
            &upper.join("etc/changed"),
            "trusted.overlay.origin",
            b"\x00",
        )
        .unwrap();
        fs::write(upper.join("new/deep/file"), b"n").unwrap();

        let s = merge_upper(&upper, &root, &["var/lib/hutch-agent"]).unwrap();
        assert!(!root.join("etc/gone").exists());
        assert!(
            !root.join("etc/old/f").exists(),
            "opaque dir hides the lower"
        );
        assert_eq!(fs::read(root.join("etc/old/g")).unwrap(), b"g");
        assert_eq!(fs::read(root.join("etc/changed")).unwrap(), b"after");
        assert_eq!(fs::read(&cache_copy).unwrap(), b"before", "cache untouched");
        assert!(
            xattrs::get(&root.join("etc/changed"), "trusted.overlay.origin")
                .unwrap()
                .is_none()
        );
        assert_eq!(fs::read(root.join("new/deep/file")).unwrap(), b"n");
        assert_eq!(fs::read(root.join("opt/keep/k")).unwrap(), b"k");
        assert!(!root.join("var/lib/hutch-agent/env.json").exists());
        assert!(s.moved >= 3 && s.removed >= 2, "{s:?}");
    }
}
