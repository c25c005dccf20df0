//! The `Backend` trait every sandbox implementation provides, and the values it trades in.
//!
//! Operations are synchronous: each is a handful of syscalls and short waits (milliseconds), and a
//! plain trait object keeps backends swappable (`Arc<dyn Backend>`). Async callers run them on a
//! blocking thread. Callers serialise operations on one sandbox; different sandboxes may be driven
//! concurrently.

use std::path::PathBuf;
use std::time::Duration;

use hutch_types::{Resources, SandboxId};
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;
use crate::template::TemplateRootfs;

/// Everything needed to create a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Its id (names its directory and cgroups).
    pub id: SandboxId,
    /// The root filesystem it starts from.
    pub template: TemplateRootfs,
    /// Its limits.
    pub resources: Resources,
    /// Whether it may reach the internet (it can never reach the host's own services).
    pub internet: bool,
    /// Opaque start-up configuration handed to the sandbox's PID 1 on every start.
    pub boot: serde_json::Value,
}

/// What the backend sees of a sandbox's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeStatus {
    /// Processes are running.
    Running,
    /// Processes exist but are frozen.
    Paused,
    /// No processes; the files remain.
    Stopped,
}

/// A sandbox's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// CPU time used since start, microseconds.
    pub cpu_usec: u64,
    /// Live processes and threads.
    pub pids: u64,
    /// OOM kills since start.
    pub oom_kills: u64,
}

/// A sandbox implementation: `native` (namespaces) here; gVisor or microVMs elsewhere.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and `/info` (`native`).
    fn name(&self) -> &'static str;
    /// Creates the sandbox's files and starts it. All or nothing: on error nothing is left.
    fn create(&self, spec: &SandboxSpec) -> Result<(), RuntimeError>;
    /// Gives a running sandbox created from `spec.template` under a placeholder id (a warm one,
    /// see the manager's pool) the identity, limits, network and boot configuration of `spec`.
    /// The sandbox's processes keep running; only its names and limits change. Telling the
    /// agent about its new boot configuration is the caller's job.
    fn adopt(&self, warm: &SandboxId, spec: &SandboxSpec) -> Result<(), RuntimeError>;
    /// Starts a stopped sandbox again, with the files it had.
    fn start(&self, id: &SandboxId) -> Result<(), RuntimeError>;
    /// Ends every process (SIGTERM to PID 1, then SIGKILL to all after `grace`); keeps files.
    fn stop(&self, id: &SandboxId, grace: Duration) -> Result<(), RuntimeError>;
    /// Freezes every process.
    fn pause(&self, id: &SandboxId) -> Result<(), RuntimeError>;
    /// Thaws a paused sandbox.
    fn resume(&self, id: &SandboxId) -> Result<(), RuntimeError>;
    /// Removes everything: processes, cgroups, network, files.
    fn kill(&self, id: &SandboxId) -> Result<(), RuntimeError>;
    /// The state of the sandbox's processes.
    fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, RuntimeError>;
    /// Resource use right now.
    fn usage(&self, id: &SandboxId) -> Result<ResourceUsage, RuntimeError>;
    /// The unix socket the sandbox's agent serves on.
    fn agent_socket(&self, id: &SandboxId) -> PathBuf;
    /// Every sandbox this backend has files for.
    fn list(&self) -> Result<Vec<SandboxId>, RuntimeError>;
    /// A TCP connection to `port` on the sandbox's own loopback (`127.0.0.1`, else `[::1]`),
    /// made inside the sandbox's network namespace: preview URLs are forwarded over it, so a
    /// service bound only to the sandbox's 127.0.0.1 is reachable, while the sandbox itself
    /// still cannot reach the host. The socket stays in the sandbox's namespace.
    ///
    /// [`RuntimeError::PortUnreachable`] when nothing accepted the connection within `timeout`;
    /// backends without a reachable sandbox network answer [`RuntimeError::Unsupported`].
    fn connect_tcp(
        &self,
        _id: &SandboxId,
        _port: u16,
        _timeout: Duration,
    ) -> Result<std::net::TcpStream, RuntimeError> {
        Err(RuntimeError::Unsupported {
            backend: self.name(),
            op: "connect to a port in a sandbox",
        })
    }
    /// The host directory holding the sandbox's own writable layer (an overlayfs upper dir), for
    /// template builds, which flatten it into the template root once the sandbox is stopped.
    /// None where the backend keeps changes elsewhere.
    fn upper_dir(&self, _id: &SandboxId) -> Option<PathBuf> {
        None
    }
}
