//! What a manager call can fail with; the server maps each variant to one HTTP status.

use hutch_types::{SandboxId, SandboxStatus, Verb};

/// A failed manager operation.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No such sandbox.
    #[error("sandbox {0} not found")]
    NotFound(SandboxId),
    /// No template by that name or id.
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    /// The request is invalid (bad limits, bad env var name, …).
    #[error("{0}")]
    Invalid(String),
    /// The sandbox's status does not allow the verb.
    #[error("cannot {} sandbox {id}: it is {status}", verb.as_str())]
    WrongState {
        /// The sandbox.
        id: SandboxId,
        /// Its status.
        status: SandboxStatus,
        /// The refused verb.
        verb: Verb,
    },
    /// No template build by that id (or no build of that template).
    #[error("template build {0:?} not found")]
    BuildNotFound(String),
    /// The request conflicts with what exists (a template name taken, a build running, a
    /// template still used by sandboxes).
    #[error("{0}")]
    Conflict(String),
    /// The request is refused (an invalid upload token).
    #[error("{0}")]
    Forbidden(String),
    /// The template is built in and cannot be deleted.
    #[error("template {0:?} is built in and cannot be deleted")]
    Protected(String),
    /// Nothing accepted a connection on a port inside a running sandbox (a preview URL whose
    /// service is not up).
    #[error("nothing is listening on port {port} in sandbox {id}: {source}")]
    PortUnreachable {
        /// The sandbox.
        id: SandboxId,
        /// The port on its loopback.
        port: u16,
        /// The connection error (refused, timed out).
        #[source]
        source: std::io::Error,
    },
    /// The sandbox runtime failed.
    #[error("sandbox runtime failed: {0}")]
    Runtime(#[from] hutch_runtime::RuntimeError),
    /// The database failed.
    #[error("database failed: {0}")]
    Store(#[from] hutch_store::StoreError),
    /// The agent did not come up.
    #[error("the sandbox agent did not become ready: {0}")]
    AgentNotReady(String),
    /// No such session.
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// No such artifact (or its sandbox, and so its file, is gone).
    #[error("artifact {0} not found")]
    ArtifactNotFound(String),
    /// A sandbox's agent failed a call the control plane made on its own behalf.
    #[error("sandbox agent: {0}")]
    Agent(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}
