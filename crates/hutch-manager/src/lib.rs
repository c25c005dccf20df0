//! hutch-manager: sandboxes as the control plane sees them.
//!
//! It owns the lifecycle state machine (every verb: lock → load → guard → act → persist), the
//! template registry, agent tokens, start-up reconciliation and the expiry reaper. It speaks to a
//! [`hutch_runtime::Backend`] below and the [`hutch_store::Store`] beside it, and knows nothing of
//! HTTP: the server translates requests into calls here.

mod builds;
mod config;
mod error;
mod lifecycle;
mod manager;
mod pool;
mod reaper;
mod recover;
mod sessions;
pub mod spec;
mod templates;
mod tokens;

pub use builds::{
    BuildStarted, BuildSubmission, LogChunk, UploadLink, CACHE_ENV, MAX_UPLOAD_BYTES,
};
pub use config::ManagerConfig;
pub use error::ManagerError;
pub use lifecycle::CreateRequest;
pub use manager::Manager;
pub use pool::WARM_PREFIX;
pub use recover::Recovered;
pub use sessions::{
    DEFAULT_TEMPLATE as SESSION_DEFAULT_TEMPLATE, DEFAULT_TIMEOUT_S as SESSION_DEFAULT_TIMEOUT_S,
};
pub use templates::{TemplateInfo, TemplateStatus, Templates};
pub use tokens::IssuedToken;

pub use hutch_store::{BuildRecord, SandboxRecord, SessionRecord};
