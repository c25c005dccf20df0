//! hutch-runtime: the sandbox backends.
//!
//! The `native` backend runs each sandbox in its own Linux namespaces over an overlayfs root,
//! limited by cgroups and confined by seccomp, dropped capabilities and Landlock.

pub mod net;
pub mod security;
