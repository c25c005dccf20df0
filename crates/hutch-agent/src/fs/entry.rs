//! One directory entry as `/files/list` reports it.
//!
//! The SDK reads `is_directory` (or `is_dir`), `permissions` (or `mode`) and `modified_time`
//! (or `modified`) and parses the time into a timezone-aware datetime, so both spellings are
//! sent and times are RFC 3339 UTC with `Z`.

use std::fs::{FileType, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::paths::display;

/// A listed file, directory or link.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The name inside its directory.
    pub name: String,
    /// The full path.
    pub path: String,
    /// Size in bytes (of the target, for a link that resolves).
    pub size: u64,
    /// Whether it is a directory (or a link to one, which can be entered like one).
    pub is_directory: bool,
    /// Same as `is_directory`: older clients read this name.
    pub is_dir: bool,
    /// Whether it is a regular file (or a link to one).
    pub is_file: bool,
    /// Whether the entry itself is a symbolic link.
    pub is_symlink: bool,
    /// Where a symbolic link points, as written in the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    /// `ls -l` style, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// Octal permission bits, e.g. `0644` (a string, so a client that reads it in place of
    /// `permissions` still gets a string).
    pub mode: String,
    /// Last modification, RFC 3339 UTC (`…Z`); null if the file system has none.
    pub modified_time: Option<String>,
    /// Same as `modified_time`: older clients read this name.
    pub modified: Option<String>,
    /// Owner uid inside the sandbox.
    pub uid: u32,
    /// Owner gid inside the sandbox.
    pub gid: u32,
}

impl Entry {
    /// Describes `path` (named `name`) from its `lstat` metadata, following a symbolic link for
    /// type, size and time when the link resolves. Blocking.
    pub fn new(path: &Path, name: String, lmeta: &Metadata) -> Self {
        let is_symlink = lmeta.file_type().is_symlink();
        let target_meta = if is_symlink {
            std::fs::metadata(path).ok()
        } else {
            None
        };
        let meta = target_meta.as_ref().unwrap_or(lmeta);
        let modified = meta
            .modified()
            .ok()
            .map(|t| hutch_types::format_rfc3339(DateTime::<Utc>::from(t)));
        let bits = lmeta.permissions().mode();
        Self {
            name,
            path: display(path),
            size: meta.len(),
            is_directory: meta.is_dir(),
            is_dir: meta.is_dir(),
            is_file: meta.is_file(),
            is_symlink,
            symlink_target: is_symlink
                .then(|| std::fs::read_link(path).ok().map(|t| display(&t)))
                .flatten(),
            permissions: permissions_string(lmeta.file_type(), bits),
            mode: format!("{:04o}", bits & 0o7777),
            modified_time: modified.clone(),
            modified,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// `ls -l` permissions: type character and the nine rwx bits with setuid, setgid and sticky
/// shown the way `ls` shows them (`s`/`S`, `t`/`T`).
pub fn permissions_string(ft: FileType, mode: u32) -> String {
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '-'
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: u32, special: u32, set: char, unset: char| match (
        mode & exec != 0,
        mode & special != 0,
    ) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_strings_match_ls() {
        let dir = std::env::temp_dir();
        let dmeta = std::fs::metadata(&dir).unwrap();
        let file = dir.join(format!("hutch-entry-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let fmeta = std::fs::metadata(&file).unwrap();
        assert_eq!(permissions_string(fmeta.file_type(), 0o644), "-rw-r--r--");
        assert_eq!(permissions_string(fmeta.file_type(), 0o4755), "-rwsr-xr-x");
        assert_eq!(permissions_string(fmeta.file_type(), 0o2640), "-rw-r-S---");
        assert_eq!(permissions_string(dmeta.file_type(), 0o1777), "drwxrwxrwt");
        assert_eq!(permissions_string(dmeta.file_type(), 0o1750), "drwxr-x--T");

        let e = Entry::new(
            &file,
            "f".into(),
            &std::fs::symlink_metadata(&file).unwrap(),
        );
        assert_eq!(e.size, 1);
        assert!(e.is_file && !e.is_directory && !e.is_symlink);
        assert!(e.modified_time.as_deref().unwrap().ends_with('Z'));
        std::fs::remove_file(&file).unwrap();
    }
}
