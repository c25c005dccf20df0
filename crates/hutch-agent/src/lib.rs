//! hutch-agent: the program inside every sandbox.
//!
//! The sandbox's PID 1 is hutch itself ([`pid1`]): it reaps orphans, forwards termination
//! signals and shuts the sandbox down cleanly. It forks the agent ([`server`]), which serves the
//! HopX agent API over HTTP on a unix socket the host bound and passed down, and runs user code
//! confined by Landlock in its own process groups.

pub mod api;
pub mod artifacts;
pub mod env;
pub mod fs;
pub mod kernels;
pub mod metrics;
pub mod pid1;
pub mod process;
pub mod server;
pub mod state;

pub use pid1::pid1_main;
