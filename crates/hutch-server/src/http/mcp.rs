//! `/mcp`: hutch's tools for AI agents over MCP's streamable HTTP transport (`hutch-mcp`), for
//! clients that speak MCP rather than the HopX API.
//!
//! The API key is required, as on the control plane. Behind it, each MCP session gets its own
//! sandbox, made on its first tool call and killed when the session is deleted or idles out;
//! the tools call this server's own API on loopback (`ServerConfig::loopback_url`) with the
//! server's key, which is the one the client presented.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use hutch_mcp::{HutchTools, McpConfig};
use hutch_types::wire::ErrorBody;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::ApiKey;
use crate::{ApiError, AppState};

/// The MCP service every `/mcp` request goes to (it holds the sessions).
pub(crate) type McpService = Arc<StreamableHttpService<HutchTools, LocalSessionManager>>;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(mcp_post, mcp_get, mcp_delete))
}

/// Builds the service for `state`'s server. The `Host` names accepted are the loopback ones
/// and the public URL's host (rmcp's DNS-rebinding check; the API key is the real gate).
pub(crate) fn service(state: &AppState) -> Result<McpService, ApiError> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if let Some(host) = host_of(&state.config.public_url) {
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
    let config = McpConfig::new(
        state.config.loopback_url.clone(),
        Some(state.config.api_key.clone()),
    );
    hutch_mcp::http_service(config, hosts)
        .map(Arc::new)
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("cannot set up the MCP endpoint: {e}"),
            )
        })
}

/// The host of a URL (`http://host:port/x` → `host`; IPv6 literals without brackets).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    authority.split(':').next().filter(|h| !h.is_empty())
}

async fn forward(service: Option<Extension<McpService>>, req: Request) -> Response {
    let Some(Extension(service)) = service else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "MCP_UNAVAILABLE",
            "the MCP endpoint is not set up on this server",
        )
        .into_response();
    };
    match service.as_ref().clone().oneshot(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(never) => match never {},
    }
}

/// MCP: send a JSON-RPC message (streamable HTTP).
///
/// `initialize` starts a session (the reply's `Mcp-Session-Id` header names it; send it on
/// every later request). Replies are JSON or a `text/event-stream`. Tools: `execute`,
/// `shell_execute`, `list_artifacts`, `cleanup_artifacts`, `get_execution_info`,
/// `start_web_app`, `create_manim_animation`, `sandbox_create`, `sandbox_list`, `sandbox_kill`,
/// `file_read`, `file_write`, `file_list`; each session works in a sandbox of its own.
#[utoipa::path(post, path = "/mcp", tag = "mcp", operation_id = "mcp_send",
    request_body(content = Object, description = "A JSON-RPC request or notification"),
    responses(
        (status = 200, description = "The JSON-RPC response, as JSON or an SSE stream"),
        (status = 202, description = "A notification was accepted"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown or expired `Mcp-Session-Id`: initialize again"),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn mcp_post(_: ApiKey, service: Option<Extension<McpService>>, req: Request) -> Response {
    forward(service, req).await
}

/// MCP: open the session's stream of server messages (SSE).
#[utoipa::path(get, path = "/mcp", tag = "mcp", operation_id = "mcp_stream",
    responses(
        (status = 200, description = "A `text/event-stream` of server messages"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn mcp_get(_: ApiKey, service: Option<Extension<McpService>>, req: Request) -> Response {
    forward(service, req).await
}

/// MCP: end the session named by `Mcp-Session-Id`; its sandbox is killed.
#[utoipa::path(delete, path = "/mcp", tag = "mcp", operation_id = "mcp_end_session",
    responses(
        (status = 204, description = "The session ended"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such session"),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn mcp_delete(_: ApiKey, service: Option<Extension<McpService>>, req: Request) -> Response {
    let resp = forward(service, req).await;
    // rmcp answers a finished DELETE with 202; the Python SDK (and the spec's examples) expect
    // 200 or 204 and log a failure otherwise. The session is already gone: say 204.
    if resp.status() == axum::http::StatusCode::ACCEPTED {
        return axum::http::StatusCode::NO_CONTENT.into_response();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("http://127.0.0.1:7770"), Some("127.0.0.1"));
        assert_eq!(host_of("https://sb.example.com/x"), Some("sb.example.com"));
        assert_eq!(host_of("http://[::1]:1"), Some("::1"));
        assert_eq!(host_of("http://"), None);
    }
}
