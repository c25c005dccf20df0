//! Files: path resolution, the file operations behind `/files/*`, and change watching.
//!
//! Everything here works on paths as the sandbox sees them (the agent's `/` is the sandbox's
//! overlay root) and knows nothing of HTTP; `api::files` maps [`FsError`] to status codes.
//! The operations in [`ops`] block; handlers run them on the blocking pool.

pub mod entry;
pub mod ops;
pub mod paths;
pub mod watch;

use std::io;
use std::path::Path;

/// Why a file operation failed. Each variant names the path as the client gave it (resolved).
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path cannot name a file: empty, a NUL byte, too long, a parent that is a file, ….
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The path is in a part of the tree the API does not change (`/proc`, `/sys`, `/dev`, `/`).
    #[error("path not allowed: {path} ({reason})")]
    NotAllowed {
        /// The offending path.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Nothing exists at the path.
    #[error("file not found: {path}")]
    NotFound {
        /// The missing path.
        path: String,
    },
    /// A directory was needed and nothing exists at the path.
    #[error("directory not found: {path}")]
    DirectoryNotFound {
        /// The missing path.
        path: String,
    },
    /// A file operation was asked of a directory.
    #[error("{path} is a directory")]
    IsDirectory {
        /// The directory.
        path: String,
    },
    /// A directory operation was asked of something else.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The non-directory.
        path: String,
    },
    /// Reading a device, FIFO or socket could block forever or never end, so it is refused.
    #[error("{path} is not a regular file")]
    NotRegularFile {
        /// The special file.
        path: String,
    },
    /// The operation would replace something it was told not to.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The existing path.
        path: String,
    },
    /// The kernel refused (a read-only layer such as `/usr`, or permission bits).
    #[error("permission denied: {path}: {source}")]
    PermissionDenied {
        /// The path.
        path: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The file is too big for a JSON answer.
    #[error(
        "{path} is larger than {limit} bytes, the limit of /files/read; \
         use /files/download to stream it"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The sandbox's disk (or quota) is full.
    #[error("no space left on the device writing {path}")]
    NoSpace {
        /// The file being written.
        path: String,
    },
    /// The path is a mount point or otherwise busy.
    #[error("{path} is busy (a mount point or in use)")]
    Busy {
        /// The path.
        path: String,
    },
    /// Anything else the kernel reported: not the client's fault.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, e.g. `open`.
        op: &'static str,
        /// The path.
        path: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// Classifies an I/O error of operation `op` on `path` by its errno, so that user-level
    /// failures get their own codes and only real surprises become internal errors.
    pub fn from_io(op: &'static str, path: &Path, source: io::Error) -> Self {
        let path = paths::display(path);
        match source.raw_os_error() {
            Some(libc::ENOENT) => Self::NotFound { path },
            Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY) => {
                Self::PermissionDenied { path, source }
            }
            Some(libc::EISDIR) => Self::IsDirectory { path },
            Some(libc::ENOTDIR) => Self::InvalidPath {
                path,
                reason: "a parent of it is not a directory".into(),
            },
            Some(libc::EEXIST | libc::ENOTEMPTY) => Self::AlreadyExists { path },
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => Self::NoSpace { path },
            Some(libc::EBUSY) => Self::Busy { path },
            Some(libc::ENAMETOOLONG) => Self::InvalidPath {
                path,
                reason: "a name in it is too long".into(),
            },
            Some(libc::ELOOP) => Self::InvalidPath {
                path,
                reason: "too many levels of symbolic links".into(),
            },
            _ => Self::Io { op, path, source },
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &str {
        match self {
            Self::InvalidPath { path, .. }
            | Self::NotAllowed { path, .. }
            | Self::NotFound { path }
            | Self::DirectoryNotFound { path }
            | Self::IsDirectory { path }
            | Self::NotADirectory { path }
            | Self::NotRegularFile { path }
            | Self::AlreadyExists { path }
            | Self::PermissionDenied { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NoSpace { path }
            | Self::Busy { path }
            | Self::Io { path, .. } => path,
        }
    }
}
