//! `POST /_hutch/boot`: the control plane gives a warm sandbox its identity when it adopts it.
//!
//! Not part of the HopX API. A sandbox's own user could call it through the gateway, but it can
//! only change what that sandbox reports about itself and its own environment.

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use hutch_types::AgentBoot;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(boot))
}

/// Give a warm sandbox its identity (internal).
///
/// Called by the control plane when it adopts a sandbox from the warm pool: sets the sandbox id,
/// template, limits and environment the agent reports and uses. Not part of the HopX API.
#[utoipa::path(post, path = "/_hutch/boot", tag = "internal", operation_id = "agent_boot",
    request_body = AgentBoot,
    responses(
        (status = 200, body = Object, description = "`success` (true) and `sandbox_id`"),
        (status = 400, body = AgentError, description = "Not a boot configuration, or invalid \
            environment variables"),
        (status = 500, body = AgentError, description = "The update task failed"),
    ),
    security(("bearer" = [])))]
async fn boot(
    Extract(state): Extract<State>,
    body: Result<Json<AgentBoot>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(boot) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let id = boot.sandbox_id.clone();
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.reboot(boot))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                e.to_string(),
            )
        })?
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    tracing::info!(sandbox = %id, "adopted");
    Ok(Json(json!({"success": true, "sandbox_id": id})))
}
