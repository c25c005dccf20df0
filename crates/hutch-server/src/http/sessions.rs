//! `/v1/sessions`: persistent Python execution contexts and their artifacts (hutch's extension,
//! `docs/sessions-api.md`). The logic is in `hutch_manager::sessions`; this module maps HTTP.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::DateTime;
use hutch_manager::{Manager, SessionRecord};
use hutch_types::format_rfc3339;
use hutch_types::sessions::{
    ArtifactsRemoved, CacheCleared, CreateSessionRequest, ExecutionObject, SessionArtifactList,
    SessionDeleted, SessionExecuteRequest, SessionHistory, SessionList, SessionObject,
    SessionSaved, SessionStats,
};
use hutch_types::wire::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{ApiKey, JsonBody};
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, delete))
        .routes(routes!(execute))
        .routes(routes!(history))
        .routes(routes!(stats))
        .routes(routes!(save))
        .routes(routes!(clear_cache))
        .routes(routes!(list_artifacts, remove_artifacts))
        .routes(routes!(get_artifact))
}

/// Where sessions collect figures and files inside their sandbox.
const ARTIFACTS_DIR: &str = "/workspace/artifacts";

fn ts(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(format_rfc3339)
        .unwrap_or_default()
}

fn session_object(r: SessionRecord) -> SessionObject {
    SessionObject {
        variables: serde_json::from_str(&r.variables).unwrap_or_default(),
        session_id: r.session_id,
        sandbox_id: r.sandbox_id,
        template: r.template,
        language: "python".into(),
        status: "active".into(),
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
        execution_count: r.execution_count,
        artifacts_dir: ARTIFACTS_DIR.into(),
        request_id: Some(request_id::current()),
    }
}

/// A session id from a path; one that cannot exist is a 400, as the contract says.
fn sid(raw: &str) -> Result<String, ApiError> {
    Ok(Manager::parse_session_id(raw)?.to_string())
}

/// Create a session (or get the existing one with this id).
///
/// Its sandbox is created on the first execution, from `template`, unless `sandbox_id` names
/// an existing one.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", operation_id = "create_session",
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "Created", body = SessionObject),
        (status = 200, description = "A session with this id exists", body = SessionObject),
        (status = 400, description = "Invalid id, environment or timeout", body = ErrorBody),
        (status = 404, description = "Unknown template or sandbox", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn create(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    JsonBody(body): JsonBody<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionObject>), ApiError> {
    let (record, created) = s.manager.create_session(body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(session_object(record))))
}

/// Every session.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list(_: ApiKey, State(s): State<Arc<AppState>>) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(SessionList {
        object: "list".into(),
        data: s
            .manager
            .sessions()?
            .into_iter()
            .map(session_object)
            .collect(),
        has_more: false,
    }))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{sid}", tag = "sessions", operation_id = "get_session",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionObject), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_one(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<SessionObject>, ApiError> {
    Ok(Json(session_object(s.manager.session(&sid(&raw)?)?)))
}

/// Delete a session: its state, history and artifact records.
///
/// The session's sandbox is killed if the session created it.
#[utoipa::path(delete, path = "/v1/sessions/{sid}", tag = "sessions",
    operation_id = "delete_session",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionDeleted), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<SessionDeleted>, ApiError> {
    let id = sid(&raw)?;
    s.manager.delete_session(&id).await?;
    Ok(Json(SessionDeleted {
        session_id: id,
        status: "deleted".into(),
    }))
}

/// Run Python code in the session.
///
/// Restores the session's state into a fresh kernel first (reported in `restored`) and saves
/// it after every successful run (`persisted`). Failing code and timeouts are 200 with
/// `success: false`.
#[utoipa::path(post, path = "/v1/sessions/{sid}/execute", tag = "sessions",
    operation_id = "execute_in_session",
    params(("sid" = String, Path, description = "Session id")),
    request_body = SessionExecuteRequest,
    responses(
        (status = 200, body = ExecutionObject),
        (status = 400, description = "Invalid code or timeout", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 502, description = "The sandbox's agent failed", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn execute(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<SessionExecuteRequest>,
) -> Result<Json<ExecutionObject>, ApiError> {
    let id = sid(&raw)?;
    Ok(Json(s.manager.execute_in_session(&id, body).await?))
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
struct HistoryQuery {
    /// Most entries (default 100).
    limit: Option<usize>,
}

/// The session's executions, newest first.
#[utoipa::path(get, path = "/v1/sessions/{sid}/history", tag = "sessions",
    operation_id = "session_history",
    params(("sid" = String, Path, description = "Session id"), HistoryQuery),
    responses((status = 200, body = SessionHistory), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn history(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<SessionHistory>, ApiError> {
    let data = s
        .manager
        .session_history(&sid(&raw)?, q.limit.unwrap_or(100))?;
    Ok(Json(SessionHistory {
        object: "list".into(),
        data,
    }))
}

/// Totals over the session's executions.
#[utoipa::path(get, path = "/v1/sessions/{sid}/stats", tag = "sessions",
    operation_id = "session_stats",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionStats), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn stats(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<SessionStats>, ApiError> {
    Ok(Json(s.manager.session_stats(&sid(&raw)?).await?))
}

/// Snapshot the session's state now.
///
/// State is already saved after every successful execution; this forces a save.
#[utoipa::path(post, path = "/v1/sessions/{sid}/save", tag = "sessions",
    operation_id = "save_session",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionSaved), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn save(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<SessionSaved>, ApiError> {
    let id = sid(&raw)?;
    let saved = s.manager.save_session(&id).await?;
    Ok(Json(SessionSaved {
        session_id: id,
        saved,
        timestamp: hutch_types::now_rfc3339(),
    }))
}

/// Empty the result and compilation caches of the session's sandbox.
#[utoipa::path(post, path = "/v1/sessions/{sid}/cache/clear", tag = "sessions",
    operation_id = "clear_session_cache",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = CacheCleared), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn clear_cache(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<CacheCleared>, ApiError> {
    s.manager.clear_session_cache(&sid(&raw)?).await?;
    Ok(Json(CacheCleared {
        message: "Cache cleared".into(),
        timestamp: hutch_types::now_rfc3339(),
    }))
}

/// `?execution_id=`.
#[derive(Debug, Deserialize, IntoParams)]
struct ArtifactQuery {
    /// Only the artifacts of this execution.
    execution_id: Option<String>,
}

/// The files the session's executions produced.
#[utoipa::path(get, path = "/v1/sessions/{sid}/artifacts", tag = "sessions",
    operation_id = "list_session_artifacts",
    params(("sid" = String, Path, description = "Session id"), ArtifactQuery),
    responses((status = 200, body = SessionArtifactList), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_artifacts(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
    Query(q): Query<ArtifactQuery>,
) -> Result<Json<SessionArtifactList>, ApiError> {
    let filter = q.execution_id.as_deref().filter(|e| !e.is_empty());
    Ok(Json(SessionArtifactList {
        object: "list".into(),
        data: s.manager.session_artifacts(&sid(&raw)?, filter)?,
    }))
}

/// Download an artifact: the file's bytes, with its type.
#[utoipa::path(get, path = "/v1/sessions/{sid}/artifacts/{artifact_id}", tag = "sessions",
    operation_id = "get_session_artifact",
    params(("sid" = String, Path, description = "Session id"),
        ("artifact_id" = String, Path, description = "Artifact id")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 404, description = "No such session or artifact, or its sandbox is gone",
            body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_artifact(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path((raw, artifact)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (mime, bytes) = s.manager.session_artifact(&sid(&raw)?, &artifact).await?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// Remove the session's artifacts: files and records.
#[utoipa::path(delete, path = "/v1/sessions/{sid}/artifacts", tag = "sessions",
    operation_id = "delete_session_artifacts",
    params(("sid" = String, Path, description = "Session id")),
    responses((status = 200, body = ArtifactsRemoved), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn remove_artifacts(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<ArtifactsRemoved>, ApiError> {
    let removed = s.manager.remove_session_artifacts(&sid(&raw)?).await?;
    Ok(Json(ArtifactsRemoved { removed }))
}
