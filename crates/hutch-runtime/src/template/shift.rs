//! Shifting a root's ownership into a sandbox's uid range, once, when it is built.
//!
//! Sandbox root is host uid `uid_base` (100000 by default). A lower layer whose files belong to
//! host root shows them as `nobody` inside, and overlayfs refuses to copy such files up for
//! writing (`/etc` could not be changed). The two fixes the isolation probes verified are
//! shifting the tree once, and an idmapped mount of the unshifted tree per sandbox. Shifting is
//! chosen: it costs a few seconds per *base* (and a base is cached and hard-linked into every
//! template made from it), it needs no per-sandbox syscalls or kernel support for idmapped
//! overlay layers, and the files then mean the same thing to every tool that looks at them.
//!
//! `chown` clears set-user-ID and set-group-ID bits and file capabilities, so both are put back
//! afterwards; capabilities are rewritten in their namespaced (v3) form, the only one a user
//! namespace honours.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

use super::{invalid, io_err, xattrs, TemplateError};

/// Ids a sandbox's user namespace maps (`0..RANGE` → `uid_base..uid_base+RANGE`).
const RANGE: u32 = 65_536;

/// What a shift did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShiftStats {
    /// Entries whose owner changed.
    pub entries: u64,
    /// Set-id bits restored.
    pub setid_restored: u64,
    /// File capabilities restored (as v3).
    pub caps_restored: u64,
}

/// Adds `uid_base` to the owner and group of every entry under `root` (itself included),
/// without following symlinks or crossing into other filesystems. Ids must be below 65536, the
/// range a sandbox maps; an entry already in the shifted range is an error (shifting twice).
pub fn shift_ownership(root: &Path, uid_base: u32) -> Result<ShiftStats, TemplateError> {
    let mut stats = ShiftStats::default();
    let dev = fs::symlink_metadata(root)
        .map_err(io_err("stat", root))?
        .dev();
    let mut seen = HashSet::new();
    shift_entry(root, uid_base, dev, &mut seen, &mut stats)?;
    Ok(stats)
}

fn shift_id(id: u32, uid_base: u32, path: &Path) -> Result<u32, TemplateError> {
    if id >= RANGE {
        return Err(invalid(
            path,
            format!(
                "owner id {id} is outside the range a sandbox maps (0..{RANGE}); shifted twice?"
            ),
        ));
    }
    Ok(uid_base + id)
}

/// `seen` holds the inodes of hard-linked files already shifted (`/usr/bin/perl` and
/// `perl5.36.0` are one file: shifting it through its second name would shift it twice).
fn shift_entry(
    path: &Path,
    uid_base: u32,
    dev: u64,
    seen: &mut HashSet<u64>,
    stats: &mut ShiftStats,
) -> Result<(), TemplateError> {
    let m = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    if m.dev() != dev {
        return Ok(());
    }
    if !m.is_dir() && m.nlink() > 1 && !seen.insert(m.ino()) {
        return Ok(());
    }
    let uid = shift_id(m.uid(), uid_base, path)?;
    let gid = shift_id(m.gid(), uid_base, path)?;
    let ft = m.file_type();
    let cap = if ft.is_file() {
        xattrs::get(path, xattrs::CAPABILITY)?
    } else {
        None
    };
    lchown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))?;
    stats.entries += 1;
    if !ft.is_symlink() && !ft.is_dir() && m.mode() & 0o6000 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", path))?;
        stats.setid_restored += 1;
    }
    if let Some(value) = cap {
        if let Some(v3) = xattrs::namespaced_capability(&value, uid_base) {
            xattrs::set(path, xattrs::CAPABILITY, &v3)?;
            stats.caps_restored += 1;
        }
    }
    if ft.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err("readdir", path))? {
            let entry = entry.map_err(io_err("readdir", path))?;
            shift_entry(&entry.path(), uid_base, dev, seen, stats)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Needs root (chown to other users).
    #[test]
    fn ownership_shifts_and_setid_bits_survive() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("home/user")).unwrap();
        lchown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
        lchown(&root, Some(0), Some(0)).unwrap();
        let su = root.join("usr/bin/su");
        fs::write(&su, b"#!").unwrap();
        lchown(&su, Some(0), Some(0)).unwrap();
        fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        lchown(root.join("bin"), Some(0), Some(0)).unwrap();
        // A second name of the same file: shifted once, not twice.
        fs::hard_link(&su, root.join("usr/bin/su2")).unwrap();

        let s = shift_ownership(&root, 100_000).unwrap();
        assert_eq!(s.entries, 7);
        assert_eq!(s.setid_restored, 1);
        let m = fs::metadata(&su).unwrap();
        assert_eq!((m.uid(), m.gid()), (100_000, 100_000));
        assert_eq!(m.mode() & 0o7777, 0o4755, "setuid restored after chown");
        assert_eq!(fs::metadata(root.join("home/user")).unwrap().uid(), 101_000);
        assert_eq!(
            fs::symlink_metadata(root.join("bin")).unwrap().uid(),
            100_000
        );
        assert_eq!(fs::metadata(&root).unwrap().uid(), 100_000);
        // Shifting twice is caught.
        assert!(shift_ownership(&root, 100_000).is_err());
    }
}
