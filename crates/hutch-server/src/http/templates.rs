//! `/v1/templates`: list, get (by name or id), delete (`spec` §6.10). Builds are in `builds.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use hutch_manager::ManagerError;
use hutch_types::wire::{DeletedObject, ErrorBody, TemplateList, TemplateObject};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::render;
use crate::extract::ApiKey;
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, delete))
}

/// Templates sandboxes can be created from.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    operation_id = "list_templates",
    params(
        ("category" = Option<String>, Query, description = "Only this category"),
        ("language" = Option<String>, Query, description = "Only this language"),
    ),
    responses((status = 200, body = TemplateList), (status = 401, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<TemplateList> {
    let matches = |field: &str, value: &str| {
        q.get(field)
            .is_none_or(|want| want.is_empty() || want.eq_ignore_ascii_case(value))
    };
    Json(TemplateList {
        object: "list".into(),
        data: s
            .manager
            .templates()
            .all()
            .iter()
            .filter(|t| matches("category", &t.category) && matches("language", &t.language))
            .map(render::template)
            .collect(),
        has_more: false,
        request_id: request_id::current(),
    })
}

/// One template, by name or id.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates",
    operation_id = "get_template",
    params(("name" = String, Path, description = "Template name or id")),
    responses((status = 200, body = TemplateObject), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_one(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<TemplateObject>, ApiError> {
    let t = s
        .manager
        .templates()
        .find(&name)
        .ok_or(ManagerError::TemplateNotFound(name))?;
    Ok(Json(render::template(&t)))
}

/// Delete a built template and its files.
///
/// Built-in templates cannot be deleted (403). A template that sandboxes were created from
/// cannot be deleted while any of them exists (409): no sandbox ever loses the root it runs on.
/// A running build of it also answers 409.
#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "templates",
    operation_id = "delete_template",
    params(("name" = String, Path, description = "Template name or id")),
    responses((status = 200, description = "Deleted", body = DeletedObject),
        (status = 403, description = "Built in", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Sandboxes still use it, or a build of it is running",
            body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<DeletedObject>, ApiError> {
    let t = s.manager.delete_template(&name).await?;
    Ok(Json(DeletedObject {
        id: t.id,
        object: "template".into(),
        status: "deleted".into(),
        request_id: request_id::current(),
    }))
}
