//! Files executions produced (`docs/sessions-api.md`, "Artifacts"): listed with the execution
//! that made them, fetched one at a time, removed on request. Executions record them when asked
//! (`capture_artifacts` on `POST /execute`, and every session execution).
//!
//! * `GET /artifacts?execution_id=` — the records.
//! * `GET /artifacts/{id}` — the file's bytes, with its type.
//! * `DELETE /artifacts`, `DELETE /artifacts/{id}` — files and records.

use axum::extract::{Path, Query, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{blocking, AgentError};
use super::{ApiError, State};
use crate::artifacts::{Artifact, ArtifactError};

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(list, remove_all))
        .routes(routes!(fetch, remove_one))
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        let msg = e.to_string();
        match e {
            ArtifactError::NotFound(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "FILE_NOT_FOUND", msg)
                    .with_details(json!({"artifact_id": id}))
            }
            ArtifactError::Io { id, path, source } => {
                let (status, code) = if source.kind() == std::io::ErrorKind::NotFound {
                    (StatusCode::NOT_FOUND, "FILE_NOT_FOUND")
                } else {
                    (StatusCode::BAD_REQUEST, "INVALID_PATH")
                };
                ApiError::new(status, code, msg)
                    .with_details(json!({"artifact_id": id, "path": path}))
            }
        }
    }
}

/// `?execution_id=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
struct ListQuery {
    /// Only the artifacts of this execution.
    execution_id: Option<String>,
}

/// List artifacts.
///
/// Every recorded artifact, oldest first, or those of one execution.
#[utoipa::path(get, path = "/artifacts", tag = "artifacts", operation_id = "list_artifacts",
    params(ListQuery),
    responses((status = 200, body = Object,
        description = "`artifacts`: [Artifact], `count`")),
    security(("bearer" = [])))]
async fn list(Extract(state): Extract<State>, Query(q): Query<ListQuery>) -> Json<Value> {
    let all: Vec<Artifact> = state
        .artifacts
        .list(q.execution_id.as_deref().filter(|e| !e.is_empty()));
    Json(json!({"count": all.len(), "artifacts": all}))
}

/// Download an artifact.
///
/// The file's bytes, with the artifact's MIME type.
#[utoipa::path(get, path = "/artifacts/{id}", tag = "artifacts", operation_id = "get_artifact",
    params(("id" = String, Path, description = "The artifact id (`art_…`)")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 404, body = AgentError, description = "`FILE_NOT_FOUND`: no such artifact, \
            or its file was removed"),
    ),
    security(("bearer" = [])))]
async fn fetch(Extract(state): Extract<State>, Path(id): Path<String>) -> Response {
    let arts = state.artifacts.clone();
    match blocking("artifact read", move || arts.read(&id)).await {
        Ok((artifact, bytes)) => {
            let disposition = format!(
                "inline; filename=\"{}\"",
                artifact.name.replace(['"', '\\', '\r', '\n'], "_")
            );
            (
                [
                    (header::CONTENT_TYPE, artifact.mime),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Remove every artifact.
///
/// Deletes the files and their records.
#[utoipa::path(delete, path = "/artifacts", tag = "artifacts",
    operation_id = "delete_artifacts",
    responses((status = 200, body = Object, description = "`removed`: how many")),
    security(("bearer" = [])))]
async fn remove_all(Extract(state): Extract<State>) -> Result<Json<Value>, ApiError> {
    let arts = state.artifacts.clone();
    let removed = blocking("artifact removal", move || arts.remove(None)).await?;
    Ok(Json(json!({"removed": removed})))
}

/// Remove an artifact.
#[utoipa::path(delete, path = "/artifacts/{id}", tag = "artifacts",
    operation_id = "delete_artifact",
    params(("id" = String, Path, description = "The artifact id")),
    responses(
        (status = 200, body = Object, description = "`removed`: 1"),
        (status = 404, body = AgentError, description = "`FILE_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn remove_one(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let arts = state.artifacts.clone();
    let removed = blocking("artifact removal", move || arts.remove(Some(&id))).await?;
    Ok(Json(json!({"removed": removed})))
}
