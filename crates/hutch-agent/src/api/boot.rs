//! `POST /_hutch/boot`: the control plane gives a warm sandbox its identity when it adopts it.
//!
//! Not part of the HopX API. A sandbox's own user could call it through the gateway, but it can
//! only change what that sandbox reports about itself and its own environment.

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hutch_types::AgentBoot;
use serde_json::{json, Value};

use super::{ApiError, State};

pub(super) fn router() -> Router<State> {
    Router::new().route("/_hutch/boot", post(boot))
}

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
