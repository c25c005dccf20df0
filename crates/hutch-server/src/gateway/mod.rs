//! The gateway: every non-control-plane request is an agent call for the sandbox its bearer
//! token belongs to.
//!
//! The token, not the path, picks the sandbox: the sync SDK drops the path of `public_host` on
//! WebSockets (`spec` §1.2), so all sandboxes share `public_host = <server URL>`. Errors here use
//! the *agent* error shape (`error` a string), because the SDK parses them with its agent client;
//! a 401 `INVALID_TOKEN` makes it refresh the token and retry once.

mod proxy;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hutch_types::SandboxStatus;
use serde_json::json;

use crate::extract::bearer;
use crate::AppState;

/// Forwards an agent call to the sandbox named by its bearer token.
pub(crate) async fn forward(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return agent_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "agent calls need the sandbox's token: Authorization: Bearer <auth_token>",
        );
    };
    let record = match state.manager.resolve_token(&token) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return agent_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOKEN",
                "unknown or expired sandbox token",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            return agent_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "token lookup failed",
            );
        }
    };
    if record.status != SandboxStatus::Running {
        // 409, not 5xx: the SDK would retry a 5xx; a paused sandbox must fail fast, not hang.
        let code = match record.status {
            SandboxStatus::Paused => "SANDBOX_PAUSED",
            SandboxStatus::Stopped => "SANDBOX_STOPPED",
            _ => "SANDBOX_NOT_READY",
        };
        return agent_error(
            StatusCode::CONFLICT,
            code,
            &format!(
                "sandbox {} is {}; resume or start it first",
                record.id, record.status
            ),
        );
    }
    let socket = state.manager.agent_socket(&record.id);
    proxy::to_agent(&socket, req).await
}

/// An error in the agent shape (`error` a string, `code` upper-case).
pub(crate) fn agent_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "error": message,
            "message": message,
            "code": code,
            "request_id": crate::request_id::current(),
            "timestamp": hutch_types::now_rfc3339(),
        })),
    )
        .into_response()
}
