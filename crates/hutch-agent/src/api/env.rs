//! `/env`: the sandbox's custom environment variables (`spec/hopx-protocol.md` §9.2).
//!
//! - `GET /env` → `{"env_vars": {…}, "count": n, "timestamp": "…Z"}`: the custom variables only
//!   (not the base environment), never masked: the SDK's `env.delete()` writes back what it read,
//!   so a mask would overwrite the real value.
//! - `PUT /env {"env_vars": {…}}` replaces them all (`"merge": true` merges instead).
//! - `PATCH /env {"env_vars": {…}, "merge": true}` merges (`"merge": false` replaces).
//! - `DELETE /env` clears them; `DELETE /env/{name}` removes one (absent is not an error).
//!
//! Every change answers 200 with the new full set in the `GET` shape (the SDK takes `env_vars`
//! from the body). Names must match `[A-Za-z_][A-Za-z0-9_]*`; values are strings (numbers and
//! booleans are accepted and kept as their JSON text) without NUL bytes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};
use crate::env::EnvError;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(get_all, put, patch, clear))
        .routes(routes!(delete_one))
}

/// The body of `PUT` and `PATCH /env`, as documented. Only a description: [`set`] parses the
/// body itself, more leniently (numbers and booleans are accepted as values, kept as their JSON
/// text).
#[allow(dead_code)] // Never built: it exists for its schema.
#[derive(ToSchema)]
#[schema(as = EnvUpdate)]
struct EnvUpdate {
    /// Name → value. Names match `[A-Za-z_][A-Za-z0-9_]*`; values have no NUL bytes.
    env_vars: BTreeMap<String, String>,
    /// Merge into the current set (default for `PATCH`) or replace it (default for `PUT`).
    merge: Option<bool>,
}

/// The reply of every `/env` call.
const ENV_REPLY: &str = "`env_vars` (name → value, the custom variables only, never masked), \
                         `count`, `timestamp`; changes add `success` (true) and `message`";

impl From<EnvError> for ApiError {
    fn from(e: EnvError) -> Self {
        match &e {
            EnvError::InvalidName(name) | EnvError::InvalidValue { name, .. } => {
                ApiError::invalid(e.to_string()).with_details(json!({ "name": name }))
            }
            EnvError::TooLarge(_) => ApiError::invalid(e.to_string()),
            // A full or read-only disk is the sandbox's state, not an agent fault: a 5xx would
            // make the SDK retry in vain.
            EnvError::Persist { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "INSUFFICIENT_STORAGE",
                    e.to_string(),
                ),
                Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
                    ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", e.to_string())
                }
                _ => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    e.to_string(),
                ),
            },
        }
    }
}

/// The body of every answer.
fn body(vars: &BTreeMap<String, String>, message: Option<&str>) -> Json<Value> {
    let mut v = json!({
        "env_vars": vars,
        "count": vars.len(),
        "timestamp": hutch_types::now_rfc3339(),
    });
    if let (Some(obj), Some(msg)) = (v.as_object_mut(), message) {
        obj.insert("success".into(), Value::Bool(true));
        obj.insert("message".into(), Value::String(msg.into()));
    }
    Json(v)
}

/// The sandbox's custom environment variables.
///
/// Only the variables set at create time or through `/env`, not the base environment.
#[utoipa::path(get, path = "/env", tag = "env", operation_id = "get_env",
    responses((status = 200, body = Object, description = ENV_REPLY)),
    security(("bearer" = [])))]
async fn get_all(Extract(state): Extract<State>) -> Json<Value> {
    body(&state.env.snapshot(), None)
}

/// Replace the custom environment variables.
///
/// `"merge": true` merges instead.
#[utoipa::path(put, path = "/env", tag = "env", operation_id = "replace_env",
    request_body = EnvUpdate,
    responses(
        (status = 200, body = Object, description = ENV_REPLY),
        (status = 400, body = AgentError, description = "`INVALID_JSON`, `MISSING_PARAMETER` \
            (no `env_vars`) or `INVALID_REQUEST` (bad name or value)"),
        (status = 403, body = AgentError, description = "`PERMISSION_DENIED`: the store cannot \
            be written"),
        (status = 413, body = AgentError, description = "Body too large, or \
            `INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = "`INTERNAL_ERROR`: saving failed"),
    ),
    security(("bearer" = [])))]
async fn put(Extract(state): Extract<State>, raw: RawBody) -> Result<Json<Value>, ApiError> {
    set(state, &body_bytes(raw)?, false).await
}

/// Merge into the custom environment variables.
///
/// `"merge": false` replaces instead.
#[utoipa::path(patch, path = "/env", tag = "env", operation_id = "update_env",
    request_body = EnvUpdate,
    responses(
        (status = 200, body = Object, description = ENV_REPLY),
        (status = 400, body = AgentError, description = "`INVALID_JSON`, `MISSING_PARAMETER` \
            (no `env_vars`) or `INVALID_REQUEST` (bad name or value)"),
        (status = 403, body = AgentError, description = "`PERMISSION_DENIED`: the store cannot \
            be written"),
        (status = 413, body = AgentError, description = "Body too large, or \
            `INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = "`INTERNAL_ERROR`: saving failed"),
    ),
    security(("bearer" = [])))]
async fn patch(Extract(state): Extract<State>, raw: RawBody) -> Result<Json<Value>, ApiError> {
    set(state, &body_bytes(raw)?, true).await
}

/// The body whatever its content type (clients are not all careful to send one).
type RawBody = Result<Bytes, BytesRejection>;

/// The body, or a JSON error (axum's own rejections are plain text, which the SDK cannot read).
fn body_bytes(raw: RawBody) -> Result<Bytes, ApiError> {
    raw.map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, "INVALID_REQUEST", e.body_text())
    })
}

/// PUT and PATCH: parse `{"env_vars": {…}, "merge": bool}`, then replace or merge.
async fn set(state: State, raw: &[u8], default_merge: bool) -> Result<Json<Value>, ApiError> {
    let req: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("the body must be a JSON object with env_vars: {e}"),
        )
    })?;
    let Some(obj) = req.as_object() else {
        return Err(ApiError::invalid(
            "the body must be a JSON object with env_vars",
        ));
    };
    let vars = match obj.get("env_vars") {
        Some(Value::Object(m)) => strings(m)?,
        Some(Value::Null) | None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MISSING_PARAMETER",
                "env_vars (an object of name → string) is required",
            ))
        }
        Some(_) => return Err(ApiError::invalid("env_vars must be an object")),
    };
    let merge = match obj.get("merge") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => default_merge,
        Some(_) => return Err(ApiError::invalid("merge must be a boolean")),
    };
    let new = blocking(move || {
        if merge {
            state.env.merge(vars)
        } else {
            state.env.replace(vars)
        }
    })
    .await?;
    let msg = if merge {
        "Environment variables merged"
    } else {
        "Environment variables replaced"
    };
    Ok(body(&new, Some(msg)))
}

/// Values as strings: strings as they are, numbers and booleans as their JSON text.
fn strings(m: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    m.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(
                        ApiError::invalid(format!("the value of {k} must be a string"))
                            .with_details(json!({ "name": k })),
                    )
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// Remove every custom environment variable.
#[utoipa::path(delete, path = "/env", tag = "env", operation_id = "clear_env",
    responses(
        (status = 200, body = Object, description = ENV_REPLY),
        (status = 403, body = AgentError, description = "`PERMISSION_DENIED`: the store cannot \
            be written"),
        (status = 413, body = AgentError, description = "`INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = "`INTERNAL_ERROR`: saving failed"),
    ),
    security(("bearer" = [])))]
async fn clear(Extract(state): Extract<State>) -> Result<Json<Value>, ApiError> {
    let new = blocking(move || state.env.clear()).await?;
    Ok(body(&new, Some("Environment variables cleared")))
}

/// Remove one custom environment variable.
///
/// Removing a variable that is not set is not an error.
#[utoipa::path(delete, path = "/env/{name}", tag = "env", operation_id = "delete_env_var",
    params(("name" = String, Path, description = "Variable name")),
    responses(
        (status = 200, body = Object, description = ENV_REPLY),
        (status = 403, body = AgentError, description = "`PERMISSION_DENIED`: the store cannot \
            be written"),
        (status = 413, body = AgentError, description = "`INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = "`INTERNAL_ERROR`: saving failed"),
    ),
    security(("bearer" = [])))]
async fn delete_one(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let new = blocking(move || state.env.remove(&name)).await?;
    Ok(body(&new, Some("Environment variable removed")))
}

/// Runs a store change (it saves to disk) on the blocking pool.
async fn blocking(
    f: impl FnOnce() -> Result<BTreeMap<String, String>, EnvError> + Send + 'static,
) -> Result<BTreeMap<String, String>, ApiError> {
    super::error::blocking("environment update", f).await
}
