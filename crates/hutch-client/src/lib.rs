//! hutch-client: typed clients for hutch's HTTP surfaces.

pub mod agent;

pub use agent::{AgentClient, AgentError, CommandOutput};
