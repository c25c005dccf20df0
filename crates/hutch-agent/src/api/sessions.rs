//! A session's saved state, moved as opaque bytes by the control plane (internal; see
//! `docs/sessions-api.md`, "Sessions inside the sandbox"). Executions name a session with
//! `session_id` on `POST /execute`.
//!
//! * `GET /_hutch/sessions/{sid}/state` — the bytes the kernel last saved.
//! * `PUT /_hutch/sessions/{sid}/state` — the control plane's copy, into a new sandbox.
//! * `DELETE /_hutch/sessions/{sid}` — the session's context and state.

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hutch_types::SessionId;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{blocking, AgentError};
use super::{ApiError, State};
use crate::kernels::session;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(get_state, put_state))
        .routes(routes!(delete_session))
}

fn session_id(raw: &str) -> Result<String, ApiError> {
    SessionId::parse(raw)
        .map(String::from)
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("session state: {e}"))
}

/// Read a session's saved state (internal).
#[utoipa::path(get, path = "/_hutch/sessions/{sid}/state", tag = "internal",
    operation_id = "agent_get_session_state",
    params(("sid" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The state", content_type = "application/octet-stream"),
        (status = 400, body = AgentError, description = "Invalid session id"),
        (status = 404, body = AgentError, description = "`SESSION_NOT_FOUND`: nothing saved"),
    ),
    security(("bearer" = [])))]
async fn get_state(Path(sid): Path<String>) -> Response {
    let sid = match session_id(&sid) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let found = blocking("session read", {
        let sid = sid.clone();
        move || session::read_state(&sid).map_err(io_error)
    })
    .await;
    match found {
        Ok(Some(bytes)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("session {sid} has no saved state in this sandbox"),
        )
        .with_details(json!({"session_id": sid}))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Replace a session's saved state (internal).
///
/// The next execution in the session restores it if its kernel has not loaded it yet.
#[utoipa::path(put, path = "/_hutch/sessions/{sid}/state", tag = "internal",
    operation_id = "agent_put_session_state",
    params(("sid" = String, Path, description = "The session id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Saved"),
        (status = 400, body = AgentError, description = "Invalid session id"),
    ),
    security(("bearer" = [])))]
async fn put_state(Path(sid): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    let sid = session_id(&sid)?;
    blocking("session write", move || {
        session::write_state(&sid, &body).map_err(io_error)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forget a session (internal).
///
/// Kills the session's kernel and removes its saved state.
#[utoipa::path(delete, path = "/_hutch/sessions/{sid}", tag = "internal",
    operation_id = "agent_delete_session",
    params(("sid" = String, Path, description = "The session id")),
    responses(
        (status = 204, description = "Removed (or there was nothing)"),
        (status = 400, body = AgentError, description = "Invalid session id"),
    ),
    security(("bearer" = [])))]
async fn delete_session(
    Extract(state): Extract<State>,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sid = session_id(&sid)?;
    blocking("session removal", move || {
        state.kernels.delete_session(&sid).map_err(io_error)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
