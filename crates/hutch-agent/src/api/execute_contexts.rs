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
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::super::error::AgentError;
use super::super::{ApiError, State};
use super::kernel_error;
use crate::kernels::{ContextInfo, Language};

/// History entries returned when the request gives no limit.
const DEFAULT_HISTORY: usize = 100;
/// Most history entries returned.
const MAX_HISTORY: usize = 1000;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one, remove))
        .routes(routes!(restart))
        .routes(routes!(history))
        .routes(routes!(stats))
}

/// The body of `POST /contexts` (optional: no body makes a Python context).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ContextCreateRequest)]
struct CreateBody {
    /// `python` (default) or `javascript`.
    #[serde(default)]
    language: Option<String>,
    /// The kernel's working directory (also accepted as `working_dir` or `workdir`).
    #[serde(default, alias = "working_dir", alias = "workdir")]
    cwd: Option<String>,
}

/// Create an interpreter context.
///
/// Answers at once; the context's kernel starts in the background.
#[utoipa::path(post, path = "/contexts", tag = "contexts", operation_id = "create_context",
    request_body(content = Option<CreateBody>, description = "Optional; no body makes a Python \
        context"),
    responses(
        (status = 200, body = ContextInfo, description = "The new context"),
        (status = 400, body = AgentError, description = "Invalid body or a language without \
            contexts (`bash`, `go`)"),
        (status = 409, body = AgentError, description = "`TOO_MANY_CONTEXTS`"),
    ),
    security(("bearer" = [])))]
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

/// List interpreter contexts.
#[utoipa::path(get, path = "/contexts", tag = "contexts", operation_id = "list_contexts",
    responses((status = 200, body = Object, description = "`contexts` (context objects as \
        `GET /contexts/{id}` returns them, oldest first), `count`, `timestamp`")),
    security(("bearer" = [])))]
async fn list(Extract(state): Extract<State>) -> Json<Value> {
    let contexts = state.kernels.list_contexts();
    Json(json!({
        "count": contexts.len(),
        "contexts": contexts,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

/// One interpreter context.
#[utoipa::path(get, path = "/contexts/{id}", tag = "contexts", operation_id = "get_context",
    params(("id" = String, Path, description = "Context id, e.g. `default-python`")),
    responses(
        (status = 200, body = ContextInfo),
        (status = 404, body = AgentError, description = "`CONTEXT_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn one(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.kernels.context(&id).map_err(kernel_error)?;
    Ok(Json(json!(info)))
}

/// Restart a context's kernel.
///
/// Kills the kernel (its state is lost) and waits for a fresh one.
#[utoipa::path(post, path = "/contexts/{id}/restart", tag = "contexts",
    operation_id = "restart_context",
    params(("id" = String, Path, description = "Context id")),
    responses(
        (status = 200, body = ContextInfo, description = "The context, plus `restarted: true`"),
        (status = 400, body = AgentError, description = "Bad working directory or missing \
            runtime"),
        (status = 404, body = AgentError, description = "`CONTEXT_NOT_FOUND`"),
        (status = 408, body = AgentError, description = "`EXECUTION_TIMEOUT`: interrupted"),
        (status = 422, body = AgentError, description = "`KERNEL_UNAVAILABLE`: the new kernel \
            did not start"),
    ),
    security(("bearer" = [])))]
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

/// Delete a context.
///
/// Kills its kernel and forgets the context.
#[utoipa::path(delete, path = "/contexts/{id}", tag = "contexts", operation_id = "delete_context",
    params(("id" = String, Path, description = "Context id")),
    responses(
        (status = 200, body = Object, description = "`success` (true), `id`, `message`, \
            `timestamp`"),
        (status = 404, body = AgentError, description = "`CONTEXT_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
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

/// Execution history, newest first.
#[utoipa::path(get, path = "/execute/history", tag = "execute", operation_id = "execution_history",
    params(("limit" = Option<usize>, Query, description = "Entries (default 100, at most 1000)")),
    responses(
        (status = 200, body = Object, description = "`history` (entries: `execution_id`, \
            `timestamp`, `language`, `context_id`, `execution_time`, `success`, `exit_code`, \
            `status`, `cache_hit`, `compile_hit`, `kernel_restarted`, `code_sha256`, \
            `code_length`, `artifacts`), `count`, `limit`, `timestamp`"),
        (status = 400, body = AgentError, description = "`limit` is not a number"),
    ),
    security(("bearer" = [])))]
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

/// Execution statistics.
#[utoipa::path(get, path = "/execute/stats", tag = "execute", operation_id = "execution_stats",
    responses((status = 200, body = Object, description = "`total_executions`, \
        `successful_executions`, `failed_executions`, `average_execution_time`, `cache_hits`, \
        `cache_misses`, `cache_hit_ratio`, `compile_cache_hits`, `cached_compilations`, \
        `artifacts_count`, `timeouts`, `kernel_restarts`, `by_language`, `history_size`, \
        `timestamp`")),
    security(("bearer" = [])))]
async fn stats(Extract(state): Extract<State>) -> Json<Value> {
    let mut body = json!(state.kernels.stats());
    body["timestamp"] = json!(hutch_types::now_rfc3339());
    Json(body)
}
