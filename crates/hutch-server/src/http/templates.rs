//! `/v1/templates`: list, get (by name or id), delete (`spec` §6.10).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use hutch_manager::ManagerError;
use serde_json::{json, Value};

use super::render;
use crate::extract::ApiKey;
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/templates", get(list))
        .route("/v1/templates/{name}", get(get_one).delete(delete))
}

async fn list(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let matches = |field: &str, value: &str| {
        q.get(field)
            .is_none_or(|want| want.is_empty() || want.eq_ignore_ascii_case(value))
    };
    let data: Vec<Value> = s
        .manager
        .templates()
        .all()
        .iter()
        .filter(|t| matches("category", &t.category) && matches("language", &t.language))
        .map(render::template)
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "request_id": request_id::current(),
    }))
}

async fn get_one(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = s
        .manager
        .templates()
        .find(&name)
        .ok_or(ManagerError::TemplateNotFound(name))?;
    Ok(Json(render::template(t)))
}

async fn delete(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = s
        .manager
        .templates()
        .find(&name)
        .ok_or_else(|| ManagerError::TemplateNotFound(name.clone()))?;
    // Every template so far ships with hutch; built ones become deletable with template builds.
    Err(ManagerError::Protected(t.name.clone()).into())
}
