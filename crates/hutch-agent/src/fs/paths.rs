//! Turning a client's path into one the agent acts on, and deciding where the API may write.
//!
//! Rules:
//! - A path must be non-empty, free of NUL bytes and at most [`MAX_PATH_LEN`] bytes.
//! - A relative path is taken relative to the sandbox's working directory (`/workspace` unless
//!   the sandbox says otherwise): that is where the SDK's own defaults point, and where a user who
//!   writes `files.write("notes.txt", …)` looks for the file afterwards.
//! - `.` and `..` are resolved lexically, so `/workspace/../proc` is `/proc` before any check.
//! - Reading, listing and `exists` are allowed anywhere (`/proc/cpuinfo` is a fair thing to read;
//!   the agent runs as the same sandbox root as user code, so refusing reads would protect
//!   nothing). Changing the tree (write, upload, mkdir, remove) is refused under `/proc`, `/sys`
//!   and `/dev` (except the `/dev/shm` scratch area) and for `/` itself: those are kernel
//!   interfaces and mount points, where a stray write or a recursive remove is never what a
//!   client meant. The check also resolves symbolic links of the existing part of the path, so a
//!   link in `/workspace` pointing into `/proc` is refused too. This is a guard against
//!   accidents, not a security boundary: user code could do the same writes itself.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::FsError;

/// Longest path accepted (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Trees the API does not change.
const PROTECTED: &[&str] = &["/proc", "/sys", "/dev"];

/// Writable places inside [`PROTECTED`] trees.
const PROTECTED_EXCEPTIONS: &[&str] = &["/dev/shm"];

/// A path for messages and JSON (lossy for non-UTF-8 names, which the API cannot carry anyway).
pub fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Validates `raw` and makes it absolute and free of `.`/`..`, relative paths being taken
/// relative to `base`.
pub fn resolve(raw: &str, base: &Path) -> Result<PathBuf, FsError> {
    let invalid = |reason: &str| FsError::InvalidPath {
        path: raw.to_string(),
        reason: reason.to_string(),
    };
    if raw.trim().is_empty() {
        return Err(invalid("the path is empty"));
    }
    if raw.contains('\0') {
        return Err(invalid("the path contains a NUL byte"));
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(invalid("the path is longer than 4096 bytes"));
    }
    let joined = if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        base.join(raw)
    };
    Ok(normalize(&joined))
}

/// Lexical normalisation: drops `.`, resolves `..` (never above `/`), makes the path absolute.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `path` (absolute, normalised) lies in a tree the API does not change.
pub fn is_protected(path: &Path) -> bool {
    let inside = |root: &&str| path.starts_with(root);
    PROTECTED.iter().any(inside) && !PROTECTED_EXCEPTIONS.iter().any(inside)
}

/// Refuses changes to `path` when it, or what its existing part resolves to through symbolic
/// links, is protected. With `follow_last` the final component is resolved too (a write opens
/// through a link); without it the link itself is the subject (remove deletes the link).
/// Blocking: it may `realpath` the path's existing ancestors.
pub fn check_mutable(path: &Path, follow_last: bool) -> Result<(), FsError> {
    let refuse = |reason| FsError::NotAllowed {
        path: display(path),
        reason,
    };
    if path == Path::new("/") {
        return Err(refuse(
            "the root directory cannot be changed through the API",
        ));
    }
    if is_protected(path) {
        return Err(refuse(
            "/proc, /sys and /dev are not changed through the API",
        ));
    }
    if let Some(real) = real_path(path, follow_last) {
        if real == Path::new("/") || is_protected(&real) {
            return Err(refuse(
                "it resolves, through a symbolic link, into /proc, /sys or /dev",
            ));
        }
    }
    Ok(())
}

/// `path` with its longest existing prefix resolved through symbolic links (the not yet
/// existing rest appended as is); `None` if nothing could be resolved.
fn real_path(path: &Path, follow_last: bool) -> Option<PathBuf> {
    let mut rest: Vec<OsString> = Vec::new();
    let mut cur = path.to_path_buf();
    if !follow_last {
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?.to_path_buf();
    }
    loop {
        if let Ok(real) = std::fs::canonicalize(&cur) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return Some(out);
        }
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?.to_path_buf();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> PathBuf {
        PathBuf::from("/workspace")
    }

    #[test]
    fn resolves_relative_against_base() {
        assert_eq!(resolve("a/b.txt", &ws()).unwrap(), ws().join("a/b.txt"));
        assert_eq!(resolve("./a", &ws()).unwrap(), ws().join("a"));
        assert_eq!(resolve("/tmp/x", &ws()).unwrap(), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn normalizes_dots_without_escaping_root() {
        assert_eq!(
            resolve("/workspace/../proc/1", &ws()).unwrap(),
            PathBuf::from("/proc/1")
        );
        assert_eq!(resolve("../../../..", &ws()).unwrap(), PathBuf::from("/"));
        assert_eq!(
            resolve("/a//b/./c/", &ws()).unwrap(),
            PathBuf::from("/a/b/c")
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "   ", "a\0b"] {
            assert!(matches!(
                resolve(bad, &ws()),
                Err(FsError::InvalidPath { .. })
            ));
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert!(resolve(&long, &ws()).is_err());
    }

    #[test]
    fn protected_trees() {
        for p in ["/proc", "/proc/1/environ", "/sys/fs", "/dev/null"] {
            assert!(is_protected(Path::new(p)), "{p}");
        }
        for p in ["/dev/shm/x", "/workspace/proc", "/procfoo", "/tmp"] {
            assert!(!is_protected(Path::new(p)), "{p}");
        }
        assert!(check_mutable(Path::new("/"), false).is_err());
        assert!(check_mutable(Path::new("/proc/self/x"), true).is_err());
    }

    #[test]
    fn symlinks_into_protected_trees_are_refused() {
        let dir = std::env::temp_dir().join(format!("hutch-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/proc", &link).unwrap();
        assert!(check_mutable(&link.join("x/y"), true).is_err());
        // Removing the link itself is fine; writing through it is not.
        assert!(check_mutable(&link, false).is_ok());
        assert!(check_mutable(&link, true).is_err());
        assert!(check_mutable(&dir.join("new/file"), true).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
