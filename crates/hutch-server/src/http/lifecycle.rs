//! Lifecycle verbs on one sandbox (`spec` §6.6–6.9). The POSTs arrive with a JSON content type
//! and no body, so none of them reads one except `timeout`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{render, sandbox_id};
use crate::extract::{ApiKey, JsonBody};
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/sandboxes/{id}/pause", post(pause))
        .route("/v1/sandboxes/{id}/resume", post(resume))
        .route("/v1/sandboxes/{id}/stop", post(stop))
        .route("/v1/sandboxes/{id}/start", post(start))
        .route("/v1/sandboxes/{id}/timeout", put(timeout))
        .route("/v1/sandboxes/{id}/token/refresh", post(refresh_token))
}

type Reply = Result<Json<Value>, ApiError>;

async fn pause(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.pause(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

async fn resume(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.resume(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

async fn stop(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.stop(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

async fn start(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let r = s.manager.start(&sandbox_id(&id)?).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

#[derive(Debug, Deserialize)]
struct TimeoutBody {
    timeout_seconds: Option<i64>,
}

async fn timeout(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TimeoutBody>,
) -> Reply {
    let id = sandbox_id(&id)?;
    let secs = body
        .timeout_seconds
        .ok_or_else(|| ApiError::invalid("timeout_seconds is required"))?;
    let r = s.manager.set_timeout(&id, secs).await?;
    Ok(Json(render::sandbox(&r, &s.config.public_url)))
}

async fn refresh_token(_: ApiKey, State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Reply {
    let id = sandbox_id(&id)?;
    let r = s.manager.get(&id)?;
    let t = s.manager.issue_token(&id)?;
    let mut v = render::sandbox_with_token(&r, &s.config.public_url, &t);
    v["request_id"] = json!(request_id::current());
    Ok(Json(v))
}
