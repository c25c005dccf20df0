//! Template builds (`spec` §6.11, and hutch's own TOML specs).
//!
//! Two ways in, one builder (`hutch_manager::builds`):
//!
//! - `POST /v1/templates/builds` — hutch's: a name and a TOML spec (`templates/README.md`);
//!   what `hutch template build` sends. 202.
//! - `POST /v1/templates/build` — the HopX SDK's `Template.build()`: a base image and
//!   Dockerfile-like steps, mapped onto Debian packages. 201. Its COPY files arrive first
//!   through `POST /v1/templates/files/upload-link` and a `PUT` to the returned URL, which is
//!   served here too and authenticated by the one-time token in it (the SDK sends no API key
//!   with the upload).
//!
//! Both are followed with `GET /v1/templates/build/{build_id}/status` and
//! `GET /v1/templates/build/{id}/logs`. The SDK parses the build replies into dataclasses that
//! reject unknown keys, so these replies carry exactly the documented keys.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::DateTime;
use futures_util::TryStreamExt;
use hutch_manager::{BuildRecord, BuildSubmission};
use hutch_types::format_rfc3339;
use hutch_types::wire::{
    ErrorBody, HopxBuildRequest, TemplateBuildLogs, TemplateBuildRequest, TemplateBuildStarted,
    TemplateBuildStatus, UploadLinkRequest, UploadLinkResponse,
};
use serde_json::{json, Value};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::extract::{ApiKey, JsonBody};
use crate::{request_id, ApiError, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(build_from_spec))
        .routes(routes!(hopx_build))
        .routes(routes!(build_status))
        .routes(routes!(build_logs))
        .routes(routes!(upload_link))
        // The archive is streamed to disk, never buffered; its size is bounded by the link.
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
}

fn ts(secs: i64) -> Option<String> {
    DateTime::from_timestamp(secs, 0).map(format_rfc3339)
}

fn started(s: &AppState, b: hutch_manager::BuildStarted) -> TemplateBuildStarted {
    TemplateBuildStarted {
        logs_url: format!(
            "{}/v1/templates/build/{}/logs",
            s.config.public_url.trim_end_matches('/'),
            b.build_id
        ),
        build_id: b.build_id,
        template_id: b.template_id,
        status: "building".into(),
        request_id: Some(request_id::current()),
    }
}

/// Build a template from a hutch TOML spec.
///
/// The spec is checked at once (400 naming the problem); the build then runs in the background
/// — follow it with the status and logs routes. A name in use answers 409 unless `force` is
/// set; with `force` the template is replaced once the new build succeeds, and sandboxes
/// already running keep the root they started from.
#[utoipa::path(post, path = "/v1/templates/builds", tag = "templates",
    operation_id = "build_template",
    request_body = TemplateBuildRequest,
    responses(
        (status = 202, description = "Build queued", body = TemplateBuildStarted),
        (status = 400, description = "Invalid spec or name", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "The name is taken (and force is false), or a build of \
            it is running", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn build_from_spec(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    JsonBody(req): JsonBody<TemplateBuildRequest>,
) -> Result<(StatusCode, Json<TemplateBuildStarted>), ApiError> {
    let plan = s.manager.plan_toml_build(&req.name, &req.spec)?;
    let b = s.manager.submit_build(BuildSubmission {
        name: req.name,
        plan,
        force: req.force,
        source: req.spec,
    })?;
    Ok((StatusCode::ACCEPTED, Json(started(&s, b))))
}

/// Build a template the HopX SDK way (`Template.build()`).
///
/// `from_image` must be an image hutch can make from Debian packages: `debian:bookworm`
/// (`debian:12`, `debian`), `python:3.11` (`python:3`, `python`: bookworm with python3, pip and
/// venv) or `node:18` (`node`: bookworm with nodejs and npm), optionally `-slim`/`-bookworm`;
/// any other answers 400 naming these. Steps: COPY (files uploaded before), RUN, ENV, WORKDIR,
/// USER (`root` or `user`), CMD.
#[utoipa::path(post, path = "/v1/templates/build", tag = "templates",
    operation_id = "hopx_build_template",
    request_body = HopxBuildRequest,
    responses(
        (status = 201, description = "Build queued", body = TemplateBuildStarted),
        (status = 400, description = "Unsupported image or invalid step", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "The name is taken (and update is false)",
            body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn hopx_build(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    JsonBody(req): JsonBody<HopxBuildRequest>,
) -> Result<(StatusCode, Json<TemplateBuildStarted>), ApiError> {
    let plan = s.manager.plan_hopx_build(&req)?;
    let source = serde_json::to_string(&HopxBuildRequest {
        registry_credentials: None,
        ..req.clone()
    })
    .unwrap_or_default();
    let b = s.manager.submit_build(BuildSubmission {
        name: req.name,
        plan,
        force: req.update,
        source,
    })?;
    Ok((StatusCode::CREATED, Json(started(&s, b))))
}

fn status_of(b: &BuildRecord) -> TemplateBuildStatus {
    TemplateBuildStatus {
        build_id: b.id.clone(),
        template_id: b.template_id.to_string(),
        status: b.status.clone(),
        progress: b.progress.clamp(0, 100) as u8,
        started_at: ts(b.started_at).unwrap_or_default(),
        current_step: b.current_step.clone(),
        completed_at: b.completed_at.and_then(ts),
        error_message: b.error_message.clone(),
        build_duration_ms: b.duration_ms.map(|d| d.max(0) as u64),
        request_id: Some(request_id::current()),
    }
}

/// The state of a build: `building`, `active` (succeeded) or `failed` (with the failed step
/// in `error_message`), with `progress` (0–100) and `current_step`.
#[utoipa::path(get, path = "/v1/templates/build/{build_id}/status", tag = "templates",
    operation_id = "template_build_status",
    params(("build_id" = String, Path, description = "Build id")),
    responses(
        (status = 200, body = TemplateBuildStatus),
        (status = 404, description = "Unknown build", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn build_status(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(build_id): Path<String>,
) -> Result<Json<TemplateBuildStatus>, ApiError> {
    Ok(Json(status_of(&s.manager.build(&build_id)?)))
}

/// A build's log from byte `offset` on, as JSON.
///
/// Accepts a build id or a template id or name (then its latest build): the SDK asks with the
/// template id. Poll with the returned `offset` until `complete`.
#[utoipa::path(get, path = "/v1/templates/build/{id}/logs", tag = "templates",
    operation_id = "template_build_logs",
    params(
        ("id" = String, Path, description = "Build id, or template id or name"),
        ("offset" = Option<u64>, Query, description = "Byte offset to read from (default 0)"),
    ),
    responses(
        (status = 200, body = TemplateBuildLogs),
        (status = 404, description = "Unknown build or template", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn build_logs(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<TemplateBuildLogs>, ApiError> {
    let offset = match q.get("offset").map(|o| o.trim()) {
        None | Some("") => 0,
        Some(o) => o
            .parse::<u64>()
            .map_err(|_| ApiError::invalid(format!("offset must be a byte count, got {o:?}")))?,
    };
    let chunk = s.manager.build_logs(&id, offset)?;
    Ok(Json(TemplateBuildLogs {
        logs: chunk.text,
        offset: chunk.offset,
        status: chunk.status,
        complete: chunk.complete,
        request_id: Some(request_id::current()),
    }))
}

/// Where to upload a COPY step's files (a tar.gz), or `present` if they are here already.
///
/// The returned `upload_url` is on this server and carries a one-time token valid for an hour;
/// the upload itself needs no API key.
#[utoipa::path(post, path = "/v1/templates/files/upload-link", tag = "templates",
    operation_id = "template_upload_link",
    request_body = UploadLinkRequest,
    responses(
        (status = 200, body = UploadLinkResponse),
        (status = 400, description = "Invalid hash or size", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])))]
async fn upload_link(
    _: ApiKey,
    State(s): State<Arc<AppState>>,
    JsonBody(req): JsonBody<UploadLinkRequest>,
) -> Result<Json<UploadLinkResponse>, ApiError> {
    let link = s.manager.upload_link(&req.files_hash, req.content_length)?;
    Ok(Json(UploadLinkResponse {
        present: link.present,
        upload_url: link.token.map(|t| {
            format!(
                "{}/v1/templates/files/upload/{}?token={t}",
                s.config.public_url.trim_end_matches('/'),
                req.files_hash
            )
        }),
        expires_at: link.expires_at.and_then(ts),
        files_hash: Some(req.files_hash),
        request_id: Some(request_id::current()),
    }))
}

/// Receive a COPY step's files: the raw tar.gz, `PUT` to the URL `upload-link` returned.
///
/// No API key (the SDK sends none here): the `token` in the URL authorises this one upload.
/// The body may not exceed the `content_length` announced for the link.
#[utoipa::path(put, path = "/v1/templates/files/upload/{files_hash}", tag = "templates",
    operation_id = "template_upload_files",
    params(
        ("files_hash" = String, Path, description = "The hash the link was issued for"),
        ("token" = String, Query, description = "The link's one-time token"),
    ),
    request_body(content = Vec<u8>, content_type = "application/gzip",
        description = "The tar.gz"),
    responses(
        (status = 200, description = "Stored: `{files_hash, size, status}`", body = Object),
        (status = 400, description = "Too large, or not gzip", body = ErrorBody),
        (status = 403, description = "Invalid or expired token", body = ErrorBody),
    ))]
async fn upload(
    State(s): State<Arc<AppState>>,
    Path(files_hash): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let token = q.get("token").map(String::as_str).unwrap_or("");
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let size = s.manager.receive_upload(&files_hash, token, reader).await?;
    Ok(Json(json!({
        "files_hash": files_hash,
        "size": size,
        "status": "uploaded",
        "request_id": request_id::current(),
    })))
}
