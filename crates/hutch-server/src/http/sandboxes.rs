//! `/v1/sandboxes`: create, list, get, delete (`spec` §6.2–6.5).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hutch_manager::CreateRequest;
use hutch_types::wire::{
    CreateSandboxRequest, DeletedObject, ErrorBody, SandboxList, SandboxObject,
};
use hutch_types::SandboxStatus;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{render, sandbox_id};
use crate::extract::{ApiKey, JsonBody};
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, delete))
}

/// Create a sandbox and start it. Replies with the sandbox and its first agent token.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes",
    operation_id = "create_sandbox",
    request_body = CreateSandboxRequest,
    responses(
        (status = 201, description = "Created and running", body = SandboxObject),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown template", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn create(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<CreateSandboxRequest>,
) -> Result<(StatusCode, Json<SandboxObject>), ApiError> {
    let template = match (&body.template_id, &body.template_name) {
        (Some(id), _) => id.as_key(),
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

/// List sandboxes, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    operation_id = "list_sandboxes",
    params(
        ("limit" = Option<usize>, Query, description = "Page size, 1–1000 (default 100)"),
        ("status" = Option<String>, Query, description = "running, paused, stopped or creating"),
        ("region" = Option<String>, Query, description = "Only `local` exists"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = SandboxList),
        (status = 400, description = "Invalid limit, status or cursor", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn list(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<SandboxList>, ApiError> {
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
    Ok(Json(SandboxList {
        object: "list".into(),
        data: rows
            .iter()
            .map(|r| render::sandbox(r, &state.config.public_url))
            .collect(),
        has_more: next.is_some(),
        next_cursor: next,
        request_id: request_id::current(),
    }))
}

/// One sandbox.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    operation_id = "get_sandbox",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxObject), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_one(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SandboxObject>, ApiError> {
    let id = sandbox_id(&id)?;
    let r = state.manager.get(&id)?;
    Ok(Json(render::sandbox(&r, &state.config.public_url)))
}

/// Kill a sandbox: its processes, cgroups, network and files are removed.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    operation_id = "delete_sandbox",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = DeletedObject), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete(
    _: ApiKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<DeletedObject>, ApiError> {
    let id = sandbox_id(&id)?;
    state.manager.delete(&id).await?;
    Ok(Json(DeletedObject {
        id: id.to_string(),
        object: "sandbox".into(),
        status: "deleted".into(),
        request_id: request_id::current(),
    }))
}
