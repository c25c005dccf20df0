//! Lifecycle verbs on one sandbox (`spec` §6.6–6.9). The POSTs arrive with a JSON content type
//! and no body, so none of them reads one except `timeout`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use hutch_types::wire::{ErrorBody, SandboxObject, TimeoutRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{render, sandbox_id};
use crate::extract::{ApiKey, JsonBody};
use crate::{ApiError, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(stop))
        .routes(routes!(start))
        .routes(routes!(timeout))
        .routes(routes!(refresh_token))
}

type Reply = Result<Json<SandboxObject>, ApiError>;

/// Freeze every process of a running sandbox (no CPU; memory kept).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "lifecycle",
    params(("id" = String, Path)),
    responses((status = 200, body = SandboxObject), (status = 404, body = ErrorBody),
        (status = 409, description = "Not running", body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn pause(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.pause(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

/// Thaw a paused sandbox exactly where it stopped.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "lifecycle",
    params(("id" = String, Path)),
    responses((status = 200, body = SandboxObject), (status = 404, body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn resume(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.resume(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

/// End every process; the files stay.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/stop", tag = "lifecycle",
    params(("id" = String, Path)),
    responses((status = 200, body = SandboxObject), (status = 404, body = ErrorBody),
        (status = 409, description = "Already stopped", body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn stop(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.stop(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

/// Start a stopped sandbox with the files it had.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/start", tag = "lifecycle",
    params(("id" = String, Path)),
    responses((status = 200, body = SandboxObject), (status = 404, body = ErrorBody),
        (status = 409, description = "Not stopped", body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn start(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.start(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

/// Kill the sandbox `timeout_seconds` from now.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/timeout", tag = "lifecycle",
    params(("id" = String, Path)),
    request_body = TimeoutRequest,
    responses((status = 200, body = SandboxObject), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn timeout(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TimeoutRequest>,
) -> Reply {
    let id = sandbox_id(&id)?;
    let secs = body
        .timeout_seconds
        .ok_or_else(|| ApiError::invalid("timeout_seconds is required"))?;
    let r = s.manager.set_timeout(&id, secs).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

/// Issue a new agent token (earlier ones keep working until they expire).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/token/refresh", tag = "lifecycle",
    params(("id" = String, Path)),
    responses((status = 200, description = "The sandbox with `auth_token` and `token_expires_at`",
        body = SandboxObject), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn refresh_token(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let id = sandbox_id(&id)?;
    let r = s.manager.get(&id)?;
    let t = s.manager.issue_token(&id)?;
    Ok(Json(render::sandbox_with_token(
        &r,
        &s.config.public_url,
        &t,
    )))
}
