//! The blocking file operations behind `/files/*`. Each takes a path already resolved by
//! [`super::paths::resolve`] and returns a typed [`FsError`].

use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entry::Entry;
use super::paths::{check_mutable, display};
use super::FsError;

/// Mode of files the API creates when the client names none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Mode of directories the API creates.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Prefix of the temporary files uploads are streamed into before they are renamed into place;
/// the watcher hides them.
pub const STAGING_PREFIX: &str = ".hutch-upload-";

/// Opens `path` for reading if it is a regular file (following links). Devices, FIFOs and
/// sockets are refused before opening: reading them may block forever or never end.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), FsError> {
    let meta = fs::metadata(path).map_err(|e| FsError::from_io("stat", path, e))?;
    if meta.is_dir() {
        return Err(FsError::IsDirectory {
            path: display(path),
        });
    }
    if !meta.is_file() {
        return Err(FsError::NotRegularFile {
            path: display(path),
        });
    }
    // O_NONBLOCK: if the path was swapped for a FIFO since the stat, open must not hang.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FsError::from_io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::from_io("stat", path, e))?;
    if !meta.is_file() {
        return Err(FsError::NotRegularFile {
            path: display(path),
        });
    }
    Ok((file, meta))
}

/// Reads a whole regular file of at most `limit` bytes. Pseudo-files (`/proc/…`) report size 0,
/// so the limit is enforced on what is actually read, too.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let (file, meta) = open_regular(path)?;
    let too_large = || FsError::TooLarge {
        path: display(path),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FsError::from_io("read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// Creates the missing parents of `path` (like `mkdir -p`).
pub fn create_parents(path: &Path) -> Result<(), FsError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DEFAULT_DIR_MODE)
        .create(parent)
        .map_err(|e| parent_error(path, e))
}

/// A parent that exists but is not a directory makes the path invalid rather than "existing".
fn parent_error(path: &Path, e: io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::EEXIST | libc::ENOTDIR) => FsError::InvalidPath {
            path: display(path),
            reason: "a parent of it is not a directory".into(),
        },
        _ => FsError::from_io("mkdir", path, e),
    }
}

/// Writes `data` to `path`: creates missing parents, truncates an existing file (keeping its
/// inode, owner and links) unless `overwrite` is false, and sets `mode` if given (new files
/// without one get [`DEFAULT_FILE_MODE`]). Returns the bytes written.
pub fn write_file(
    path: &Path,
    data: &[u8],
    mode: Option<u32>,
    overwrite: bool,
) -> Result<u64, FsError> {
    check_mutable(path, true)?;
    create_parents(path)?;
    let existed = match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(FsError::IsDirectory {
                path: display(path),
            })
        }
        Ok(_) if !overwrite => {
            return Err(FsError::AlreadyExists {
                path: display(path),
            })
        }
        Ok(m) if !m.is_file() => {
            return Err(FsError::NotRegularFile {
                path: display(path),
            })
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).mode(mode.unwrap_or(DEFAULT_FILE_MODE));
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut file = opts
        .open(path)
        .map_err(|e| FsError::from_io("open", path, e))?;
    file.write_all(data)
        .map_err(|e| FsError::from_io("write", path, e))?;
    // The open mode is filtered by the umask and ignored for existing files; set it exactly.
    if let Some(m) = mode.or((!existed).then_some(DEFAULT_FILE_MODE)) {
        file.set_permissions(Permissions::from_mode(m))
            .map_err(|e| FsError::from_io("chmod", path, e))?;
    }
    Ok(data.len() as u64)
}

/// `mkdir -p path`. Returns whether it had to create anything; an existing directory is
/// success, an existing non-directory is [`FsError::AlreadyExists`].
pub fn make_dir(path: &Path, mode: Option<u32>) -> Result<bool, FsError> {
    check_mutable(path, true)?;
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(FsError::AlreadyExists {
                path: display(path),
            })
        }
        Err(_) => {}
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode.unwrap_or(DEFAULT_DIR_MODE))
        .create(path)
        .map_err(|e| parent_error(path, e))?;
    if let Some(m) = mode {
        fs::set_permissions(path, Permissions::from_mode(m))
            .map_err(|e| FsError::from_io("chmod", path, e))?;
    }
    Ok(true)
}

/// Removes a file, a symbolic link (not its target) or a whole directory tree. Returns whether
/// it was a directory.
pub fn remove(path: &Path) -> Result<bool, FsError> {
    check_mutable(path, false)?;
    let meta = fs::symlink_metadata(path).map_err(|e| FsError::from_io("stat", path, e))?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(|e| FsError::from_io("remove", path, e))?;
        Ok(true)
    } else {
        fs::remove_file(path).map_err(|e| FsError::from_io("remove", path, e))?;
        Ok(false)
    }
}

/// What `exists` reports: `None` when nothing is there (a dangling link counts as nothing,
/// like `os.path.exists`), else whether it is a directory.
pub fn exists(path: &Path) -> Option<bool> {
    fs::metadata(path).ok().map(|m| m.is_dir())
}

/// A directory listing, sorted by name, of at most `limit` entries.
#[derive(Debug)]
pub struct Listing {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Whether entries were left out because of the limit.
    pub truncated: bool,
}

/// Lists a directory (following a link to one). Entries that vanish while listing are skipped.
pub fn list_dir(path: &Path, limit: usize) -> Result<Listing, FsError> {
    let meta = fs::metadata(path).map_err(|e| match FsError::from_io("stat", path, e) {
        FsError::NotFound { path } => FsError::DirectoryNotFound { path },
        other => other,
    })?;
    if !meta.is_dir() {
        return Err(FsError::NotADirectory {
            path: display(path),
        });
    }
    let dir = fs::read_dir(path).map_err(|e| FsError::from_io("list", path, e))?;
    let mut entries = Vec::new();
    let mut truncated = false;
    for item in dir {
        let Ok(item) = item else { continue };
        if entries.len() >= limit {
            truncated = true;
            break;
        }
        let full = item.path();
        let Ok(lmeta) = fs::symlink_metadata(&full) else {
            continue;
        };
        let name = item.file_name().to_string_lossy().into_owned();
        entries.push(Entry::new(&full, name, &lmeta));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing { entries, truncated })
}

/// Moves a finished staging file to `target`: a rename when both are on one file system, else a
/// copy (then the staging file is removed by its owner).
pub fn place(staging: &Path, target: &Path, mode: u32) -> Result<(), FsError> {
    fs::set_permissions(staging, Permissions::from_mode(mode))
        .map_err(|e| FsError::from_io("chmod", staging, e))?;
    if let Ok(m) = fs::metadata(target) {
        if m.is_dir() {
            return Err(FsError::IsDirectory {
                path: display(target),
            });
        }
    }
    match fs::rename(staging, target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(staging, target).map_err(|e| FsError::from_io("copy", target, e))?;
            fs::set_permissions(target, Permissions::from_mode(mode))
                .map_err(|e| FsError::from_io("chmod", target, e))
        }
        Err(e) => Err(FsError::from_io("rename", target, e)),
    }
}

/// A fresh staging path in `dir`.
pub fn staging_path(dir: &Path) -> PathBuf {
    dir.join(format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hutch-ops-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_read_list_remove() {
        let d = tmp("wrlr");
        let f = d.join("a/b/c.txt");
        assert_eq!(write_file(&f, "héllo".as_bytes(), None, true).unwrap(), 6);
        assert_eq!(read_file(&f, 100).unwrap(), "héllo".as_bytes());
        assert!(matches!(
            read_file(&f, 3),
            Err(FsError::TooLarge { limit: 3, .. })
        ));
        assert!(matches!(
            write_file(&f, b"x", None, false),
            Err(FsError::AlreadyExists { .. })
        ));
        write_file(&f, b"x", Some(0o600), true).unwrap();
        let l = list_dir(&d.join("a/b"), 10).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].permissions, "-rw-------");
        assert_eq!(l.entries[0].size, 1);
        assert!(matches!(
            list_dir(&f, 10),
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(
            list_dir(&d.join("nope"), 10),
            Err(FsError::DirectoryNotFound { .. })
        ));
        assert!(matches!(
            read_file(&d, 10),
            Err(FsError::IsDirectory { .. })
        ));
        assert!(matches!(
            write_file(&f.join("under-a-file"), b"x", None, true),
            Err(FsError::InvalidPath { .. })
        ));
        assert!(!make_dir(&d.join("a"), None).unwrap());
        assert!(make_dir(&d.join("x/y/z"), None).unwrap());
        assert!(matches!(
            make_dir(&f, None),
            Err(FsError::AlreadyExists { .. })
        ));
        assert_eq!(exists(&d.join("x/y")), Some(true));
        assert!(remove(&d.join("x")).unwrap());
        assert_eq!(exists(&d.join("x")), None);
        assert!(matches!(
            remove(&d.join("x")),
            Err(FsError::NotFound { .. })
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn special_files_are_not_read() {
        assert!(matches!(
            read_file(Path::new("/dev/null"), 10),
            Err(FsError::NotRegularFile { .. })
        ));
    }
}
