//! The runtime's error type: one variant per failing stage, each naming what it acted on.

use std::io;
use std::path::PathBuf;

use hutch_types::SandboxId;

use crate::backend::RuntimeStatus;
use crate::cgroup::CgroupError;
use crate::net::NetError;
use crate::template::TemplateError;

/// A failed backend operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No sandbox with this id.
    #[error("sandbox {0} not found")]
    NotFound(SandboxId),
    /// A sandbox with this id already exists.
    #[error("sandbox {0} already exists")]
    AlreadyExists(SandboxId),
    /// The operation does not apply in the sandbox's current state.
    #[error("cannot {op} sandbox {id}: it is {status:?}")]
    WrongState {
        /// The sandbox.
        id: SandboxId,
        /// Its state.
        status: RuntimeStatus,
        /// The refused operation.
        op: &'static str,
    },
    /// A warm sandbox cannot take this spec (another template, or it was not running).
    #[error("sandbox {warm} cannot be adopted: {why}")]
    CannotAdopt {
        /// The warm sandbox.
        warm: SandboxId,
        /// Why.
        why: &'static str,
    },
    /// Nothing accepted a TCP connection on the port inside the sandbox (refused: nothing
    /// listens there; or no answer in time).
    #[error("nothing accepted a connection on port {port} in sandbox {id}")]
    PortUnreachable {
        /// The sandbox.
        id: SandboxId,
        /// The port, on the sandbox's loopback.
        port: u16,
        /// The connection error.
        #[source]
        source: io::Error,
    },
    /// The backend cannot do this.
    #[error("the {backend} backend cannot {op}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The operation.
        op: &'static str,
    },
    /// A template layer is missing.
    #[error("template layer {0:?} does not exist")]
    MissingLayer(PathBuf),
    /// The built-in template could not be prepared.
    #[error(transparent)]
    Template(#[from] TemplateError),
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
    /// A cgroup step failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A network step failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The spawn helper could not be run or died without a report.
    #[error("sandbox helper {exe:?} failed: {message}")]
    Helper {
        /// The helper program.
        exe: PathBuf,
        /// What went wrong, with its stderr.
        message: String,
    },
    /// The sandbox failed to come up; `step` says where.
    #[error("sandbox set-up failed at {step}: {message}")]
    Setup {
        /// The failing step (`mount overlay`, `join cgroup`, …).
        step: String,
        /// The error text.
        message: String,
    },
    /// The sandbox's state file is unreadable.
    #[error("state file {path:?} is corrupt")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
