//! hutch-client: typed clients for hutch's HTTP surfaces.
//!
//! * [`control`]: raw HTTP/1.1 to the server (control plane and gateway), with the API key.
//! * [`api`]: the control plane as typed calls, with the server's errors as values.
//! * [`sandbox`]: one sandbox's agent API through the gateway, WebSockets included.
//! * [`agent`]: an agent over its unix socket (the server's and the tests' side).

pub mod agent;
pub mod api;
pub mod control;
pub mod sandbox;

pub use agent::{AgentClient, AgentError, CommandOutput};
pub use api::{ApiError, CreateSandbox, Lifecycle, Object, Sandbox, Template};
pub use control::{ControlClient, ControlError, Response};
pub use hyper::{Method, StatusCode};
pub use sandbox::{SandboxClient, SandboxError};
