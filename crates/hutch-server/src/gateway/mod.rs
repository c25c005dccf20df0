//! The gateway: every non-control-plane request is an agent call for the sandbox its bearer
//! token belongs to.
//!
//! The token, not the path, picks the sandbox: the sync SDK drops the path of `public_host` on
//! WebSockets (`spec` §1.2), so all sandboxes share `public_host = <server URL>`. Errors here use
//! the *agent* error shape (`error` a string), because the SDK parses them with its agent client;
//! a 401 `INVALID_TOKEN` makes it refresh the token and retry once.

pub(crate) mod preview;
mod proxy;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hutch_types::{SandboxId, SandboxStatus};
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
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    match proxy::to_agent(&socket, req).await {
        Ok(resp) => resp,
        Err(failure) => explain_failure(&state, &record.id, failure, idempotent),
    }
}

/// Turns a failed forward into an answer the SDK handles right. The usual cause is the sandbox
/// being killed, paused or stopped during the call: that is a 4xx, not a retryable 5xx (the SDK
/// would re-send the request to a sandbox that is gone). If the sandbox still runs, the agent
/// itself failed; a 502 is retried by the SDK, which is only safe when the request never reached
/// the agent or is idempotent — otherwise user code could run twice.
fn explain_failure(
    state: &AppState,
    id: &SandboxId,
    failure: proxy::Failure,
    idempotent: bool,
) -> Response {
    match state.manager.get(id) {
        Err(_) => agent_error(
            StatusCode::GONE,
            "SANDBOX_NOT_FOUND",
            &format!("sandbox {id} was deleted during the request"),
        ),
        Ok(r) if r.status != SandboxStatus::Running => agent_error(
            StatusCode::CONFLICT,
            "SANDBOX_NOT_RUNNING",
            &format!("sandbox {id} became {} during the request", r.status),
        ),
        Ok(_) => match failure {
            proxy::Failure::Unreachable => agent_error(
                StatusCode::BAD_GATEWAY,
                "AGENT_UNAVAILABLE",
                "the sandbox agent is not reachable",
            ),
            proxy::Failure::Dropped if idempotent => agent_error(
                StatusCode::BAD_GATEWAY,
                "AGENT_UNAVAILABLE",
                "the sandbox agent closed the connection",
            ),
            proxy::Failure::Dropped => agent_error(
                StatusCode::CONFLICT,
                "AGENT_INTERRUPTED",
                "the sandbox agent closed the connection during the request; it may or may not \
                 have run — check before retrying",
            ),
        },
    }
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
