//! hutch-store: the control plane's durable state, in SQLite (WAL mode).
//!
//! One module per table. The store knows nothing of HTTP or kernels; it only keeps records, so a
//! restarted server finds every sandbox and token it had.

mod db;
mod sandboxes;
mod sessions;
mod templates;
mod tokens;

pub use db::{Store, StoreError};
pub use sandboxes::{ListFilter, SandboxRecord};
pub use sessions::{SessionArtifact, SessionExecution, SessionRecord};
pub use templates::{BuildRecord, TemplateRecord};
