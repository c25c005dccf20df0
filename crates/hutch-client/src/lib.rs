//! hutch-client: typed clients for hutch's HTTP surfaces.

pub mod agent;
pub mod control;

pub use agent::{AgentClient, AgentError, CommandOutput};
pub use control::{ControlClient, ControlError, Response};
pub use hyper::{Method, StatusCode};
