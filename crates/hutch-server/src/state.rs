//! What every handler shares.

use std::sync::Arc;

use hutch_manager::Manager;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The API key clients must present.
    pub api_key: String,
    /// The base URL clients reach this server at; sandboxes' `public_host`.
    pub public_url: String,
    /// The URL this server reaches itself at (`http://127.0.0.1:<port>`): the tools behind
    /// `/mcp` call the server's own API there, whatever name clients use.
    pub loopback_url: String,
}

/// Shared state.
pub struct AppState {
    /// The sandbox manager.
    pub manager: Arc<Manager>,
    /// Settings.
    pub config: ServerConfig,
}
