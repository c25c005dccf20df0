//! Templates: the read-only root filesystems sandboxes start from.
//!
//! Two kinds, one shape ([`TemplateRootfs`]: overlay lower layers plus read-only host binds):
//!
//! - the **built-in** template ([`builtin`]): a small generated root over the host's own `/usr`,
//!   ready on a fresh machine with no network;
//! - **built** templates: a Debian root made by `mmdebstrap` ([`bootstrap`]), shifted once to the
//!   sandbox's uid range ([`shift`]), cloned per template with hard links ([`tree`]), changed by
//!   file steps ([`files`]) and by commands run in a sandbox of it (whose upper layer is then
//!   flattened back, [`tree::merge_upper`]), and finished with the generated `/etc` files every
//!   sandbox needs ([`finalize`], [`etc`]). The control plane (`hutch-manager`) orchestrates;
//!   everything here is synchronous filesystem work on trees nobody else is using.

pub mod bootstrap;
mod builtin;
pub mod etc;
pub mod files;
pub mod finalize;
pub mod shift;
pub mod tree;
mod xattrs;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rootfs::BindMount;

pub use builtin::ensure_builtin;

/// A template's root filesystem as the runtime mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRootfs {
    /// Read-only layers, uppermost first.
    pub layers: Vec<PathBuf>,
    /// Host directories bound read-only into the sandbox.
    pub binds: Vec<BindMount>,
}

/// Why a template root could not be prepared or changed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A filesystem step failed.
    #[error("{op} {path:?} failed")]
    Io {
        /// The step.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Something in a tree or an archive cannot be used (a path escaping the root, an overlay
    /// feature the flattener does not know, a file where a directory is needed, …).
    #[error("{path:?}: {why}")]
    Invalid {
        /// The offending path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> TemplateError + 'a {
    move |source| TemplateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn invalid(path: &Path, why: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}
