//! hutch-mcp: hutch's sandboxes as MCP tools, on the official Rust SDK (`rmcp`).
//!
//! The tools (seed 003's `execute`, `shell_execute`, `list_artifacts`, `cleanup_artifacts`,
//! `get_execution_info`, `start_web_app`, `create_manim_animation`, plus sandbox lifecycle and
//! file tools) talk to a hutch server over its HTTP API with `hutch-client` — the control plane
//! with the API key, each sandbox's agent through the gateway with its token — so one
//! implementation serves both transports:
//!
//! * **stdio** ([`serve_stdio`], `hutch mcp`): for MCP clients that launch a command. The
//!   process is the session.
//! * **streamable HTTP** ([`http_service`], `/mcp` on the server): the server mounts it and the
//!   tools call the server's own API on loopback. One MCP session (`Mcp-Session-Id`) is one
//!   tool session; the protocol revisions without sessions (2026-07-28 on) are not offered here,
//!   because the per-session sandbox needs a session to belong to.
//!
//! Every tool runs in a real sandbox: one per MCP session, created on first use and killed when
//! the session ends (the stdio process exits, the HTTP session is deleted or expires), unless
//! the call names a `sandbox_id`. Sandboxes the session created also carry a hutch timeout,
//! pushed back while the session uses them, so even a session that is never closed cleanly
//! leaves nothing behind for long.
//!
//! Errors follow MCP's split: input the tool cannot act on (a missing `code`, an unknown
//! language, a port of 0) is a protocol error (`invalid_params`); anything that went wrong in
//! or with the sandbox is a tool result with `isError: true` and the message, for the model to
//! read.

mod error;
mod session;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;

pub use error::McpError;
pub use tools::HutchTools;

/// The template of per-session sandboxes unless configured otherwise.
pub const DEFAULT_TEMPLATE: &str = "code-interpreter";

/// How long hutch keeps a sandbox a session created should the session never end cleanly.
pub const DEFAULT_SANDBOX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the tools find hutch, and what the sandboxes they create are made of.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// The hutch server, `http://HOST:PORT`: its control plane and its agent gateway.
    pub url: String,
    /// The API key the control plane wants.
    pub api_key: Option<String>,
    /// Template of the per-session sandbox and the default of `sandbox_create`.
    pub template: String,
    /// How long sandboxes the session creates live unused: their hutch timeout, pushed back
    /// while the session keeps using them, so it is the backstop that deletes them should the
    /// session end without cleaning up (a killed client, a crash). Over HTTP, also how long an
    /// idle session lasts.
    pub sandbox_timeout: Duration,
    /// Offer only protocol revisions that have sessions (the HTTP endpoint: its per-session
    /// sandbox has nothing to belong to otherwise). Over stdio the process is the session.
    pub require_sessions: bool,
}

impl McpConfig {
    /// Settings for the server at `url`, with the defaults for everything else.
    pub fn new(url: impl Into<String>, api_key: Option<String>) -> Self {
        Self {
            url: url.into(),
            api_key,
            template: DEFAULT_TEMPLATE.into(),
            sandbox_timeout: DEFAULT_SANDBOX_TIMEOUT,
            require_sessions: false,
        }
    }
}

/// Serves the tools over standard input and output until the client closes them (or the
/// process is told to stop), then kills the sandboxes the session created.
pub async fn serve_stdio(config: McpConfig) -> Result<(), McpError> {
    let tools = HutchTools::new(&config)?;
    let session = tools.session();
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Start(e.to_string()))?;
    let token = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            if let Err(e) = quit {
                tracing::warn!(error = %e, "MCP service task failed");
            }
        }
        () = stop_requested() => token.cancel(),
    }
    session.close().await;
    Ok(())
}

/// Resolves on SIGINT, SIGTERM or SIGHUP: a client that stops its server with a signal still
/// gets the session's sandboxes cleaned up.
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    async fn on(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        () = on(SignalKind::interrupt()) => {}
        () = on(SignalKind::terminate()) => {}
        () = on(SignalKind::hangup()) => {}
    }
}

/// The streamable-HTTP MCP service, for mounting in an HTTP server (hutch's `/mcp`). Each MCP
/// session gets its own [`HutchTools`], and so its own sandbox, killed when the session is
/// deleted or idles out. `allowed_hosts` are the `Host` values accepted (DNS-rebinding
/// protection); empty accepts any.
pub fn http_service(
    mut config: McpConfig,
    allowed_hosts: Vec<String>,
) -> Result<StreamableHttpService<HutchTools, LocalSessionManager>, McpError> {
    config.require_sessions = true;
    // Fail now, not on the first session, when the URL is unusable.
    HutchTools::new(&config)?;
    let server_config = if allowed_hosts.is_empty() {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    } else {
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts)
    };
    // A session idle this long ends (and its sandbox with it): the same span after which an
    // unused sandbox of the session would expire anyway.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(config.sandbox_timeout);
    let config = Arc::new(config);
    Ok(StreamableHttpService::new(
        move || HutchTools::new(&config).map_err(std::io::Error::other),
        Arc::new(sessions),
        server_config,
    ))
}
