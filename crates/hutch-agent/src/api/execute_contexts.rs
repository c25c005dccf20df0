//! Interpreter contexts (like E2B's code contexts), execution history and statistics.
//!
//! * `POST /contexts` `{"language"?: "python", "cwd"?: "/path"}` → the new context; its kernel
//!   starts in the background.
//! * `GET /contexts` → `{"contexts": [...], "count": n}`; `GET /contexts/{id}` → one.
//! * `POST /contexts/{id}/restart` → kills the kernel (state lost) and waits for a fresh one.
//! * `DELETE /contexts/{id}` → kills the kernel and forgets the context.
//! * `GET /execute/history?limit=N` (default 100, at most 1000), newest first.
//! * `GET /execute/stats`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{ApiError, State};
use super::kernel_error;
use crate::kernels::Language;

/// History entries returned when the request gives no limit.
const DEFAULT_HISTORY: usize = 100;
/// Most history entries returned.
const MAX_HISTORY: usize = 1000;

pub(super) fn router() -> Router<State> {
    Router::new()
        .route("/contexts", post(create).get(list))
        .route("/contexts/{id}", get(one).delete(remove))
        .route("/contexts/{id}/restart", post(restart))
        .route("/execute/history", get(history))
        .route("/execute/stats", get(stats))
}

#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    #[serde(default)]
    language: Option<String>,
    #[serde(default, alias = "working_dir", alias = "workdir")]
    cwd: Option<String>,
}

async fn create(Extract(state): Extract<State>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?
    };
    let language = Language::parse(req.language.as_deref().unwrap_or(""))?;
    let info = state
        .kernels
        .create_context(language, req.cwd)
        .map_err(kernel_error)?;
    Ok(Json(json!(info)))
}

async fn list(Extract(state): Extract<State>) -> Json<Value> {
    let contexts = state.kernels.list_contexts();
    Json(json!({
        "count": contexts.len(),
        "contexts": contexts,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

async fn one(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.kernels.context(&id).map_err(kernel_error)?;
    Ok(Json(json!(info)))
}

async fn restart(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .kernels
        .restart_context(&id)
        .await
        .map_err(kernel_error)?;
    let mut body = json!(info);
    body["restarted"] = json!(true);
    Ok(Json(body))
}

async fn remove(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.kernels.delete_context(&id).map_err(kernel_error)?;
    Ok(Json(json!({
        "success": true,
        "id": id,
        "message": "Context deleted",
        "timestamp": hutch_types::now_rfc3339(),
    })))
}

async fn history(
    Extract(state): Extract<State>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query.get("limit").map(|l| l.trim()) {
        None | Some("") => DEFAULT_HISTORY,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| {
                ApiError::invalid(format!("limit must be a non-negative integer, not {l:?}"))
            })?
            .min(MAX_HISTORY),
    };
    let entries = state.kernels.history(limit);
    Ok(Json(json!({
        "count": entries.len(),
        "limit": limit,
        "history": entries,
        "timestamp": hutch_types::now_rfc3339(),
    })))
}

async fn stats(Extract(state): Extract<State>) -> Json<Value> {
    let mut body = json!(state.kernels.stats());
    body["timestamp"] = json!(hutch_types::now_rfc3339());
    Json(body)
}
