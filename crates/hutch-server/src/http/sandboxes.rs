//! `/v1/sandboxes`: create, list, get, delete (`spec` §6.2–6.5).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hutch_manager::CreateRequest;
use hutch_types::SandboxStatus;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{render, sandbox_id};
use crate::extract::{ApiKey, JsonBody};
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/sandboxes", get(list).post(create))
        .route("/v1/sandboxes/{id}", get(get_one).delete(delete))
}

/// Create body. Unknown fields are ignored (the SDK and other clients add their own).
#[derive(Debug, Deserialize)]
struct CreateBody {
    template_name: Option<String>,
    /// A string in the spec; the SDK converts ints, other clients may not.
    template_id: Option<Value>,
    #[allow(dead_code)]
    region: Option<String>,
    timeout_seconds: Option<i64>,
    internet_access: Option<bool>,
    env_vars: Option<BTreeMap<String, String>>,
    vcpu: Option<u32>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
    disk_mb: Option<u64>,
}

async fn create(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let template = match (&body.template_id, &body.template_name) {
        (Some(Value::String(s)), _) => s.clone(),
        (Some(Value::Number(n)), _) => n.to_string(),
        (Some(other), _) => {
            return Err(ApiError::invalid(format!(
                "template_id must be a string, got {other}"
            )))
        }
        (None, Some(name)) => name.clone(),
        (None, None) => {
            return Err(ApiError::invalid(
                "template_name or template_id is required",
            ))
        }
    };
    let req = CreateRequest {
        template,
        timeout_seconds: body.timeout_seconds,
        internet_access: body.internet_access,
        env_vars: body.env_vars.unwrap_or_default(),
        vcpu: body.vcpu,
        memory_mb: body.memory_mb,
        disk_mb: body
            .disk_mb
            .or(body.disk_gb.map(|g| g.saturating_mul(1024))),
    };
    let (record, token) = state.manager.create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(render::sandbox_with_token(
            &record,
            &state.config.public_url,
            &token,
        )),
    ))
}

async fn list(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit must be 1..1000, got {l:?}")))?,
    };
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<SandboxStatus>().map_err(ApiError::invalid)?),
    };
    // Every sandbox lives in the one local region; another region filter matches nothing.
    let other_region = q
        .get("region")
        .is_some_and(|r| !r.is_empty() && r != "local");
    let (rows, next) = if other_region {
        (Vec::new(), None)
    } else {
        state
            .manager
            .list(status, q.get("cursor").map(String::as_str), limit)?
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|r| render::sandbox(r, &state.config.public_url))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "has_more": next.is_some(),
        "next_cursor": next,
        "request_id": request_id::current(),
    })))
}

async fn get_one(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = sandbox_id(&id)?;
    let r = state.manager.get(&id)?;
    Ok(Json(render::sandbox(&r, &state.config.public_url)))
}

async fn delete(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = sandbox_id(&id)?;
    state.manager.delete(&id).await?;
    Ok(Json(json!({
        "id": id.as_str(),
        "object": "sandbox",
        "status": "deleted",
        "request_id": request_id::current(),
    })))
}
