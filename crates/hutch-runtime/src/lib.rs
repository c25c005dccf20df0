//! hutch-runtime: the sandbox backends.
//!
//! The `native` backend runs each sandbox in its own Linux namespaces over an overlayfs root,
//! limited by cgroups and confined by seccomp, dropped capabilities and Landlock.

pub mod backend;
pub mod cgroup;
pub mod error;
pub mod native;
pub mod net;
pub mod rootfs;
pub mod security;
pub mod sys;
pub mod template;

pub use backend::{Backend, ResourceUsage, RuntimeStatus, SandboxSpec};
pub use error::RuntimeError;
pub use native::{NativeBackend, NativeConfig, Pid1Context, Pid1Entry};
pub use template::TemplateRootfs;
