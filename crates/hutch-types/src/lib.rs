//! hutch-types: the values every layer of hutch agrees on.
//!
//! Validated identifiers (they become path components and cgroup names, so they are checked once,
//! here), resource limits with their bounds, and the RFC 3339 timestamp format the HopX SDK parses.
//! Serde only: no I/O.

mod boot;
mod id;
mod resources;
pub mod sessions;
mod status;
mod time;
pub mod wire;

pub use boot::AgentBoot;
pub use id::{IdError, SandboxId, SessionId, TemplateName};
pub use resources::{Resources, ResourcesError};
pub use status::{SandboxStatus, Verb};
pub use time::{format_rfc3339, now_rfc3339, parse_rfc3339};
