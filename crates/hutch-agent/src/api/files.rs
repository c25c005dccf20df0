//! `/files/*`: the sandbox's files as the SDK's `files` object uses them
//! (`spec/hopx-protocol.md` §9.1, §10.3). Paths are as seen inside the sandbox; relative ones are
//! taken from the working directory (`/workspace`); see `fs::paths` for what may be changed.
//!
//! - `GET /files/read?path=[&encoding=base64]` → `{content, path, size, encoding}`: text for
//!   the SDK's `read()`, at most [`MAX_READ`] bytes (413 `FILE_TOO_LARGE` beyond, pointing at
//!   `/files/download`). A file that is not valid UTF-8 is decoded lossily (U+FFFD for bad bytes)
//!   and flagged `"lossy": true`: `read()` hands `content` to the user as text and knows nothing
//!   of encodings, so base64 there would look like text but not be the file. Ask for
//!   `encoding=base64` (or use `/files/download`) for exact bytes.
//! - `GET /files/download?path=` → the raw bytes, streamed, `application/octet-stream`.
//! - `POST /files/write {path, content, mode?, encoding?: "base64", overwrite?}` → `FileResponse`.
//! - `POST /files/upload` multipart: text field `path` (optional: default the working directory
//!   plus the file's name; an existing directory or a trailing `/` means "into it"), file field
//!   `file`, optional `mode`. Streamed to a staging file next to the target, then renamed into
//!   place, so readers never see half an upload.
//! - `GET /files/list?path=` (default the working directory) → `{files: [Entry…], path, count}`.
//! - `GET /files/exists?path=` → `{exists, path, is_directory?, is_file?}`.
//! - `DELETE /files/remove?path=` (recursive) and `POST /files/mkdir {path, mode?}` (`-p`).
//! - `GET /files/watch`: WebSocket; the client sends `{"action": "watch", "path": …}` and gets
//!   `{"type": "change", "path", "event", "timestamp", "is_directory"}` per change
//!   (see `fs::watch`). Only change frames are sent unless the client asks for an
//!   acknowledgement with `"ack": true` (`{"type": "watching", "path"}`): the SDK yields every
//!   frame to user code that expects `event` in each. Errors come as
//!   `{"type": "error", "error", "code", "path"}`; if nothing is being watched the socket is then
//!   closed, so the SDK's loop ends instead of waiting forever.
//!
//! Errors use the spec's codes: 404 `FILE_NOT_FOUND` / `DIRECTORY_NOT_FOUND`, 400
//! `INVALID_PATH` (bad path, a directory where a file is needed and the reverse, a device),
//! 403 `PATH_NOT_ALLOWED` (changes under `/proc`, `/sys`, `/dev`, or to `/`), 403
//! `PERMISSION_DENIED` (read-only layers), 409 `FILE_ALREADY_EXISTS`; and, where the spec has
//! none, 413 `FILE_TOO_LARGE` and 413 `INSUFFICIENT_STORAGE` (never a 5xx, which the SDK
//! retries). Every error carries `details.path`.

use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Multipart, Query, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};
use crate::fs::paths::{self, display};
use crate::fs::watch::{Change, Watcher};
use crate::fs::{ops, FsError};

/// Largest file `/files/read` returns as JSON (it is held in memory, then escaped).
pub const MAX_READ: u64 = 64 * 1024 * 1024;
/// Largest `/files/write` body: [`MAX_READ`] bytes base64-encoded, plus room for the JSON.
pub const MAX_WRITE_BODY: usize = 96 * 1024 * 1024;
/// Most entries one listing returns (then `truncated: true`).
pub const MAX_LIST: usize = 20_000;
/// Largest client message on the watch socket (commands are tiny).
const MAX_WS_MESSAGE: usize = 64 * 1024;
/// Buffer for streaming uploads to disk and downloads to the socket.
const IO_CHUNK: usize = 256 * 1024;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(read))
        .routes(routes!(download))
        .routes(routes!(write).layer(DefaultBodyLimit::max(MAX_WRITE_BODY)))
        // Uploads are streamed to disk, so the body may be as large as the disk allows.
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(list))
        .routes(routes!(exists))
        .routes(routes!(remove))
        .routes(routes!(mkdir))
        .routes(routes!(watch))
}

/// What the error codes of file routes mean (see the module documentation), for the document.
const PATH_400: &str = "`INVALID_PATH` (bad path, a directory where a file is needed or the \
                        reverse) or `INVALID_REQUEST`";
const PATH_403: &str = "`PATH_NOT_ALLOWED` (under `/proc`, `/sys`, `/dev`, or `/` itself) or \
                        `PERMISSION_DENIED` (read-only layer)";
const PATH_404: &str = "`FILE_NOT_FOUND` or `DIRECTORY_NOT_FOUND`";
const PATH_500: &str = "`INTERNAL_ERROR`: an I/O error the agent did not expect";

impl From<FsError> for ApiError {
    fn from(e: FsError) -> Self {
        let (status, code) = match &e {
            FsError::InvalidPath { .. }
            | FsError::IsDirectory { .. }
            | FsError::NotADirectory { .. }
            | FsError::NotRegularFile { .. } => (StatusCode::BAD_REQUEST, "INVALID_PATH"),
            FsError::NotAllowed { .. } => (StatusCode::FORBIDDEN, "PATH_NOT_ALLOWED"),
            FsError::PermissionDenied { .. } => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            FsError::NotFound { .. } => (StatusCode::NOT_FOUND, "FILE_NOT_FOUND"),
            FsError::DirectoryNotFound { .. } => (StatusCode::NOT_FOUND, "DIRECTORY_NOT_FOUND"),
            FsError::AlreadyExists { .. } => (StatusCode::CONFLICT, "FILE_ALREADY_EXISTS"),
            FsError::Busy { .. } => (StatusCode::CONFLICT, "RESOURCE_BUSY"),
            FsError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "FILE_TOO_LARGE"),
            FsError::NoSpace { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "INSUFFICIENT_STORAGE"),
            FsError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
        let mut details = json!({ "path": e.path() });
        if let (FsError::TooLarge { limit, .. }, Some(d)) = (&e, details.as_object_mut()) {
            d.insert("limit".into(), json!(limit));
            d.insert("alternative".into(), json!("/files/download"));
        }
        ApiError::new(status, code, e.to_string()).with_details(details)
    }
}

/// Runs a blocking file operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, ApiError> {
    super::error::blocking("file operation", f).await
}

/// Query parameters of the path-taking GET and DELETE routes (form-decoded: `+` is a space).
#[derive(Debug, Default, Deserialize)]
struct PathQuery {
    path: Option<String>,
    encoding: Option<String>,
}

fn query(q: Result<Query<PathQuery>, QueryRejection>) -> Result<PathQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// The sandbox's working directory, base of relative paths.
fn base(state: &State) -> PathBuf {
    PathBuf::from(state.workdir(None))
}

/// Resolves a required path parameter.
fn required(state: &State, raw: Option<&str>) -> Result<PathBuf, ApiError> {
    let raw = raw.ok_or_else(|| FsError::InvalidPath {
        path: String::new(),
        reason: "the path parameter is required".into(),
    })?;
    Ok(paths::resolve(raw, &base(state))?)
}

/// A JSON body whatever its content type, with JSON errors for every failure (axum's own
/// rejections are plain text, which the SDK cannot parse).
fn json_body<T: DeserializeOwned>(raw: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = raw.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "FILE_TOO_LARGE",
                format!(
                    "the request body is larger than {MAX_WRITE_BODY} bytes; \
                     use /files/upload for large files"
                ),
            )
        } else {
            ApiError::invalid(e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(format!("bad request body: {e}")),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("the body is not valid JSON: {e}"),
        ),
    })
}

/// A permission mode: an octal string (`"0644"`, `"755"`, `"0o600"`) or a number written with
/// octal digits (`644`). Null or empty means "not given".
fn parse_mode(v: Option<&Value>) -> Result<Option<u32>, ApiError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ApiError::invalid(
                "mode must be an octal string like \"0644\"",
            ))
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(Some(m)),
        _ => Err(ApiError::invalid(format!(
            "mode {text:?} is not an octal permission mode like \"0644\""
        ))),
    }
}

fn success(path: &Path, size: Option<u64>, message: &str) -> Json<Value> {
    let mut v = json!({
        "success": true,
        "path": display(path),
        "message": message,
        "timestamp": hutch_types::now_rfc3339(),
    });
    if let (Some(size), Some(obj)) = (size, v.as_object_mut()) {
        obj.insert("size".into(), json!(size));
    }
    Json(v)
}

/// Read a file as text (or base64).
///
/// At most 64 MiB; use `/files/download` for larger files. A file that is not valid UTF-8 is
/// decoded lossily and flagged `"lossy": true`; ask for `encoding=base64` for exact bytes.
#[utoipa::path(get, path = "/files/read", tag = "files", operation_id = "read_file",
    params(
        ("path" = String, Query, description = "File path; relative to the working directory"),
        ("encoding" = Option<String>, Query, description = "`utf-8` (default) or `base64`"),
    ),
    responses(
        (status = 200, body = Object, description = "`content`, `path`, `size` (bytes), \
            `encoding` (`utf-8` or `base64`), `lossy` (when bytes were replaced)"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 404, body = AgentError, description = PATH_404),
        (status = 413, body = AgentError, description = "`FILE_TOO_LARGE`: `details.limit`, \
            `details.alternative` (`/files/download`)"),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn read(
    Extract(state): Extract<State>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let path = required(&state, q.path.as_deref())?;
    let as_base64 = match q
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "utf-8" | "utf8" | "text") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown encoding {other:?} (use utf-8 or base64)"
            )))
        }
    };
    let p = path.clone();
    let bytes = blocking(move || ops::read_file(&p, MAX_READ)).await?;
    let size = bytes.len();
    let mut body = json!({ "path": display(&path), "size": size });
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("response is not an object"))?;
    if as_base64 {
        obj.insert(
            "content".into(),
            json!(general_purpose::STANDARD.encode(&bytes)),
        );
        obj.insert("encoding".into(), json!("base64"));
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => {
                obj.insert("content".into(), json!(text));
            }
            Err(e) => {
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                obj.insert("content".into(), json!(text));
                obj.insert("lossy".into(), json!(true));
            }
        }
        obj.insert("encoding".into(), json!("utf-8"));
    }
    Ok(Json(body))
}

/// Download a file's bytes.
///
/// Streamed as `application/octet-stream` with `Content-Disposition: attachment`.
#[utoipa::path(get, path = "/files/download", tag = "files", operation_id = "download_file",
    params(("path" = String, Query, description = "File path; relative to the working directory")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = FileBytes,
            description = "The file's bytes"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 404, body = AgentError, description = PATH_404),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn download(
    Extract(state): Extract<State>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let path = required(&state, q.path.as_deref())?;
    let p = path.clone();
    let (file, meta) = blocking(move || ops::open_regular(&p)).await?;
    let file = tokio::fs::File::from_std(file);
    let len = meta.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_DISPOSITION, content_disposition(&name));
    // A length lets clients show progress and detect a cut-off body; pseudo-files (`/proc`)
    // report 0 and are streamed until they end instead (capped like `read`).
    let body = if len > 0 {
        resp = resp.header(header::CONTENT_LENGTH, len);
        Body::from_stream(ReaderStream::with_capacity(file.take(len), IO_CHUNK))
    } else {
        Body::from_stream(ReaderStream::with_capacity(file.take(MAX_READ), IO_CHUNK))
    };
    resp.body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A file's raw bytes, as `/files/download` sends them (a schema only).
#[allow(dead_code)] // Never built: it exists for its schema.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct FileBytes(Vec<u8>);

/// `attachment; filename="…"` with anything that could break the header replaced, plus the
/// exact name in RFC 5987 form for non-ASCII names.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The body of `POST /files/write`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = FileWriteRequest)]
struct WriteRequest {
    /// File path; relative to the working directory. Parent directories are created.
    #[schema(required = true, value_type = String)]
    path: Option<String>,
    /// The content: text, or base64 with `encoding: "base64"`.
    #[schema(required = true, value_type = String)]
    content: Option<String>,
    /// Permission mode: an octal string (`"0644"`, `"0o600"`) or a number written in octal
    /// digits (`644`). Default `0644`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "0644")]
    mode: Option<Value>,
    /// `utf-8` (default) or `base64`.
    encoding: Option<String>,
    /// Replace an existing file (default true); false makes an existing file a 409.
    overwrite: Option<bool>,
}

/// Base64 as Python's `b64encode` writes it, tolerating missing padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Write a file.
///
/// The body may be up to 96 MiB (64 MiB of content, base64-encoded); use `/files/upload` for
/// larger files.
#[utoipa::path(post, path = "/files/write", tag = "files", operation_id = "write_file",
    request_body = WriteRequest,
    responses(
        (status = 200, body = Object, description = "`success` (true), `path`, `size` (bytes \
            written), `message`, `timestamp`"),
        (status = 400, body = AgentError, description = "`INVALID_JSON`, `MISSING_PARAMETER` \
            (no `content`), bad base64 or mode, or `INVALID_PATH`"),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 409, body = AgentError, description = "`FILE_ALREADY_EXISTS` (with \
            `overwrite: false`) or `RESOURCE_BUSY`"),
        (status = 413, body = AgentError, description = "`FILE_TOO_LARGE` (body over the \
            limit) or `INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn write(
    Extract(state): Extract<State>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: WriteRequest = json_body(raw)?;
    let path = required(&state, req.path.as_deref())?;
    let content = req.content.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MISSING_PARAMETER",
            "content is required",
        )
        .with_details(json!({ "path": display(&path) }))
    })?;
    let mode = parse_mode(req.mode.as_ref())?;
    let data = match req
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "utf-8" | "utf8" | "text") => content.into_bytes(),
        Some("base64") => {
            let compact: Vec<u8> = content
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            drop(content);
            B64.decode(&compact)
                .map_err(|e| ApiError::invalid(format!("content is not valid base64: {e}")))?
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown encoding {other:?} (omit it for text, or use base64)"
            )))
        }
    };
    let overwrite = req.overwrite.unwrap_or(true);
    let p = path.clone();
    let size = blocking(move || ops::write_file(&p, &data, mode, overwrite)).await?;
    Ok(success(&path, Some(size), "File written successfully"))
}

/// The body of `POST /files/mkdir`.
#[derive(Debug, Deserialize, ToSchema)]
struct MkdirRequest {
    /// Directory path; relative to the working directory. Parents are created (`mkdir -p`).
    #[schema(required = true, value_type = String)]
    path: Option<String>,
    /// Permission mode as for `/files/write` (default `0755`).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "0755")]
    mode: Option<Value>,
}

/// Create a directory and its parents.
///
/// An existing directory is not an error (`created: false`).
#[utoipa::path(post, path = "/files/mkdir", tag = "files", operation_id = "make_directory",
    request_body = MkdirRequest,
    responses(
        (status = 200, body = Object, description = "`success` (true), `path`, `created`, \
            `message`, `timestamp`"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 409, body = AgentError, description = "`FILE_ALREADY_EXISTS`: a file is in \
            the way"),
        (status = 413, body = AgentError, description = "`INSUFFICIENT_STORAGE`"),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn mkdir(
    Extract(state): Extract<State>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: MkdirRequest = json_body(raw)?;
    let path = required(&state, req.path.as_deref())?;
    let mode = parse_mode(req.mode.as_ref())?;
    let p = path.clone();
    let created = blocking(move || ops::make_dir(&p, mode)).await?;
    let mut body = success(
        &path,
        None,
        if created {
            "Directory created successfully"
        } else {
            "Directory already exists"
        },
    );
    if let Some(obj) = body.0.as_object_mut() {
        obj.insert("created".into(), json!(created));
    }
    Ok(body)
}

/// Remove a file or a directory tree.
#[utoipa::path(delete, path = "/files/remove", tag = "files", operation_id = "remove_file",
    params(("path" = String, Query, description = "Path; relative to the working directory")),
    responses(
        (status = 200, body = Object, description = "`success` (true), `path`, `message`, \
            `timestamp`"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 404, body = AgentError, description = PATH_404),
        (status = 409, body = AgentError, description = "`RESOURCE_BUSY` (a mount point)"),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn remove(
    Extract(state): Extract<State>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let path = required(&state, q.path.as_deref())?;
    let p = path.clone();
    let was_dir = blocking(move || ops::remove(&p)).await?;
    Ok(success(
        &path,
        None,
        if was_dir {
            "Directory removed successfully"
        } else {
            "File removed successfully"
        },
    ))
}

/// Whether a path exists.
#[utoipa::path(get, path = "/files/exists", tag = "files", operation_id = "file_exists",
    params(("path" = String, Query, description = "Path; relative to the working directory")),
    responses(
        (status = 200, body = Object, description = "`exists`, `path`, and when it exists \
            `is_directory` and `is_file`"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn exists(
    Extract(state): Extract<State>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let path = required(&state, q.path.as_deref())?;
    let p = path.clone();
    let found = blocking(move || Ok(ops::exists(&p))).await?;
    let mut body = json!({ "exists": found.is_some(), "path": display(&path) });
    if let (Some(is_dir), Some(obj)) = (found, body.as_object_mut()) {
        obj.insert("is_directory".into(), json!(is_dir));
        obj.insert("is_file".into(), json!(!is_dir));
    }
    Ok(Json(body))
}

/// List a directory.
#[utoipa::path(get, path = "/files/list", tag = "files", operation_id = "list_files",
    params(("path" = Option<String>, Query,
        description = "Directory; default the working directory")),
    responses(
        (status = 200, body = Object, description = "`files` (entries: `name`, `path`, `size`, \
            `is_directory`, `is_file`, `permissions`, `modified_time`, …), `path`, `count`, \
            `truncated` (more than 20 000 entries)"),
        (status = 400, body = AgentError, description = PATH_400),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 404, body = AgentError, description = PATH_404),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn list(
    Extract(state): Extract<State>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let raw = q
        .path
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| state.workdir(None));
    let path = paths::resolve(&raw, &base(&state))?;
    let p = path.clone();
    let listing = blocking(move || ops::list_dir(&p, MAX_LIST)).await?;
    Ok(Json(json!({
        "count": listing.entries.len(),
        "files": listing.entries,
        "path": display(&path),
        "truncated": listing.truncated,
    })))
}

/// An upload's staging file, removed when dropped (a rename has already moved it away, so
/// only a failed or abandoned upload leaves something to remove). The unlink may run on an
/// async worker when an upload is abandoned; it is one short syscall.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where an upload goes: `raw` resolved, into it if it is a directory (or ends in `/`), or
/// the working directory plus the file's own name when no path was given. Blocking.
fn upload_target(
    raw: Option<&str>,
    file_name: Option<&str>,
    base: &Path,
) -> Result<PathBuf, FsError> {
    let name = file_name
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains('\0'));
    let into = |dir: PathBuf| match name {
        Some(n) => Ok(dir.join(n)),
        None => Err(FsError::IsDirectory {
            path: display(&dir),
        }),
    };
    match raw.filter(|r| !r.trim().is_empty()) {
        Some(raw) => {
            let resolved = paths::resolve(raw, base)?;
            if raw.ends_with('/') || std::fs::metadata(&resolved).is_ok_and(|m| m.is_dir()) {
                into(resolved)
            } else {
                Ok(resolved)
            }
        }
        None => match name {
            Some(_) => into(base.to_path_buf()),
            None => Err(FsError::InvalidPath {
                path: String::new(),
                reason: "give a path field or a file name".into(),
            }),
        },
    }
}

/// Checks a target and creates its parents. Blocking.
fn prepare_target(target: &Path) -> Result<(), FsError> {
    paths::check_mutable(target, true)?;
    ops::create_parents(target)
}

/// A short text field (`path`, `mode`).
async fn small_field(field: &mut axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > paths::MAX_PATH_LEN * 2 {
            return Err(ApiError::invalid("a multipart text field is too long"));
        }
    }
    String::from_utf8(buf).map_err(|_| ApiError::invalid("a multipart text field is not UTF-8"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = if e.status().is_client_error() {
        e.status()
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(
        status,
        "INVALID_REQUEST",
        format!("bad multipart body: {}", e.body_text()),
    )
}

/// The body of `POST /files/upload`, as documented. Only a description: [`upload`] reads the
/// multipart stream field by field.
#[allow(dead_code)] // Never built: it exists for its schema.
#[derive(ToSchema)]
#[schema(as = FileUpload)]
struct UploadForm {
    /// Target path: default the working directory plus the file's name; an existing directory
    /// or a trailing `/` means "into it". Send it before `file` so the upload is staged next to
    /// its target.
    path: Option<String>,
    /// The file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Permission mode as for `/files/write` (default `0644`).
    mode: Option<String>,
}

/// The file part, staged on disk.
struct Staged {
    staging: Staging,
    size: u64,
    file_name: Option<String>,
    /// The target, when `path` came before the file part.
    target: Option<PathBuf>,
}

/// Upload a file (multipart).
///
/// Streamed to a staging file next to the target, then renamed into place, so readers never
/// see half an upload. No size limit but the disk's.
#[utoipa::path(post, path = "/files/upload", tag = "files", operation_id = "upload_file",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, body = Object, description = "`success` (true), `path`, `size`, \
            `message`, `timestamp`"),
        (status = 400, body = AgentError, description = "Not a multipart body, \
            `MISSING_PARAMETER` (no `file` field), bad mode, or `INVALID_PATH`"),
        (status = 403, body = AgentError, description = PATH_403),
        (status = 404, body = AgentError, description = PATH_404),
        (status = 409, body = AgentError, description = "`RESOURCE_BUSY`"),
        (status = 413, body = AgentError, description = "`INSUFFICIENT_STORAGE` or \
            `FILE_TOO_LARGE`"),
        (status = 500, body = AgentError, description = PATH_500),
    ),
    security(("bearer" = [])))]
async fn upload(
    Extract(state): Extract<State>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut mp = mp.map_err(|e| {
        ApiError::invalid(format!(
            "expected a multipart/form-data body with fields path and file: {}",
            e.body_text()
        ))
    })?;
    let base = base(&state);
    let mut raw_path: Option<String> = None;
    let mut mode: Option<u32> = None;
    let mut staged: Option<Staged> = None;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("path") => raw_path = Some(small_field(&mut field).await?),
            Some("mode") => {
                mode = parse_mode(Some(&Value::String(small_field(&mut field).await?)))?
            }
            Some("file") if staged.is_none() => {
                staged = Some(stage(&mut field, raw_path.as_deref(), &base).await?);
            }
            // Unknown fields and extra files are skipped (dropping a field skips its data).
            _ => {}
        }
    }
    let Some(staged) = staged else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MISSING_PARAMETER",
            "the multipart field \"file\" is missing",
        ));
    };
    let size = staged.size;
    let target = blocking(move || {
        let target = match staged.target {
            Some(t) => t,
            None => {
                let t = upload_target(raw_path.as_deref(), staged.file_name.as_deref(), &base)?;
                prepare_target(&t)?;
                t
            }
        };
        ops::place(
            &staged.staging.0,
            &target,
            mode.unwrap_or(ops::DEFAULT_FILE_MODE),
        )?;
        drop(staged.staging);
        Ok(target)
    })
    .await?;
    Ok(success(&target, Some(size), "File uploaded successfully"))
}

/// Streams the file part to a staging file: next to the target if `path` is already known
/// (so the final rename stays on one file system), else in the working directory.
async fn stage(
    field: &mut axum::extract::multipart::Field<'_>,
    raw_path: Option<&str>,
    base: &Path,
) -> Result<Staged, ApiError> {
    let file_name = field.file_name().map(str::to_string);
    let target = match raw_path {
        Some(raw) => {
            let (raw, name, b) = (raw.to_string(), file_name.clone(), base.to_path_buf());
            Some(
                blocking(move || {
                    let t = upload_target(Some(&raw), name.as_deref(), &b)?;
                    prepare_target(&t)?;
                    Ok(t)
                })
                .await?,
            )
        }
        None => None,
    };
    let dir = match target.as_deref().and_then(Path::parent) {
        Some(d) => d.to_path_buf(),
        None => {
            let b = base.to_path_buf();
            blocking(move || {
                std::fs::create_dir_all(&b).map_err(|e| FsError::from_io("mkdir", &b, e))?;
                Ok(b)
            })
            .await?
        }
    };
    let staging = Staging(ops::staging_path(&dir));
    let shown = target.clone().unwrap_or_else(|| dir.clone());
    let io = |e| ApiError::from(FsError::from_io("write", &shown, e));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staging.0)
        .await
        .map_err(io)?;
    let mut out = tokio::io::BufWriter::with_capacity(IO_CHUNK, file);
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        out.write_all(&chunk).await.map_err(io)?;
        size += chunk.len() as u64;
    }
    out.flush().await.map_err(io)?;
    out.into_inner().sync_all().await.map_err(io)?;
    Ok(Staged {
        staging,
        size,
        file_name,
        target,
    })
}

/// Watch files for changes over a WebSocket.
///
/// A WebSocket (`GET` with `Upgrade: websocket`). Protocol, JSON text frames:
///
/// * client → agent: `{"action": "watch", "path": "…", "ack"?: true}` (`type` is accepted for
///   `action`; `path` defaults to the working directory); more commands add more watches.
/// * agent → client, per change: `{"type": "change", "path", "event", "is_directory",
///   "timestamp"}`, plus `old_path` for renames and `"overflow": true` when events were lost;
///   `event` is `created`, `modified`, `deleted` or `renamed`.
/// * `{"type": "watching", "path", "timestamp"}` only when the command asked for `ack`.
/// * errors: `{"type": "error", "error", "message", "code", "path"?, "timestamp"}`; when nothing
///   is being watched yet the socket is then closed (code 1008).
///
/// Client messages are at most 64 KiB.
#[utoipa::path(get, path = "/files/watch", tag = "files", operation_id = "watch_files",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol described above"),
        (status = 400, description = "Not a WebSocket handshake"),
        (status = 426, description = "The connection cannot be upgraded"),
    ),
    security(("bearer" = [])))]
async fn watch(Extract(state): Extract<State>, ws: WebSocketUpgrade) -> Response {
    let base = base(&state);
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| watch_socket(socket, base))
}

/// A client command on the watch socket.
#[derive(Debug, Deserialize)]
struct WatchCommand {
    #[serde(alias = "type")]
    action: Option<String>,
    path: Option<String>,
    #[serde(default)]
    ack: bool,
}

/// Serves one watch socket: commands in, changes out, until either side ends. Reading goes on
/// all the time, so pings are answered and a close is seen at once; the watcher (and its
/// inotify instance) is dropped with this function.
async fn watch_socket(mut socket: WebSocket, base: PathBuf) {
    let mut watcher: Option<Watcher> = None;
    let mut watching = 0usize;
    loop {
        let frame = tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    // Pings are answered by the protocol layer while we read.
                    Some(Ok(_)) => continue,
                };
                match command(&text, &base, &mut watcher).await {
                    Ok((path, ack)) => {
                        watching += 1;
                        if !ack {
                            continue;
                        }
                        json!({
                            "type": "watching",
                            "path": display(&path),
                            "timestamp": hutch_types::now_rfc3339(),
                        })
                    }
                    Err(e) => {
                        let frame = error_frame(e);
                        if watching == 0 {
                            let _ = socket.send(Message::Text(frame.to_string().into())).await;
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code: 1008,
                                    reason: "watch failed".into(),
                                })))
                                .await;
                            break;
                        }
                        frame
                    }
                }
            }
            change = async {
                match watcher.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => match change {
                Some(c) => change_frame(&c),
                None => break,
            },
        };
        if socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Handles one command; returns the watched path and whether an acknowledgement was asked for.
async fn command(
    text: &str,
    base: &Path,
    watcher: &mut Option<Watcher>,
) -> Result<(PathBuf, bool), ApiError> {
    let cmd: WatchCommand = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("expected {{\"action\": \"watch\", \"path\": …}}: {e}"),
        )
    })?;
    match cmd.action.as_deref() {
        Some("watch") | None => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown action {other:?}; the only action is \"watch\""
            )))
        }
    }
    let raw = cmd
        .path
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| display(base));
    let path = paths::resolve(&raw, base)?;
    let w = match watcher {
        Some(w) => w,
        None => watcher.insert(Watcher::start()?),
    };
    w.watch(path.clone()).await?;
    Ok((path, cmd.ack))
}

fn error_frame(e: ApiError) -> Value {
    let mut v = json!({
        "type": "error",
        "error": e.message,
        "message": e.message,
        "code": e.code,
        "timestamp": hutch_types::now_rfc3339(),
    });
    if let (Some(obj), Some(path)) = (v.as_object_mut(), e.details.get("path")) {
        obj.insert("path".into(), path.clone());
    }
    v
}

fn change_frame(c: &Change) -> Value {
    let mut v = json!({
        "type": "change",
        "path": display(&c.path),
        "event": c.kind.as_str(),
        "is_directory": c.is_directory,
        "timestamp": hutch_types::now_rfc3339(),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(old) = &c.old_path {
            obj.insert("old_path".into(), json!(display(old)));
        }
        if c.overflow {
            obj.insert("overflow".into(), json!(true));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(Some(&json!("0644"))).unwrap(), Some(0o644));
        assert_eq!(parse_mode(Some(&json!("755"))).unwrap(), Some(0o755));
        assert_eq!(parse_mode(Some(&json!("0o600"))).unwrap(), Some(0o600));
        assert_eq!(parse_mode(Some(&json!(644))).unwrap(), Some(0o644));
        assert_eq!(parse_mode(Some(&json!(""))).unwrap(), None);
        assert_eq!(parse_mode(None).unwrap(), None);
        assert!(parse_mode(Some(&json!("0989"))).is_err());
        assert!(parse_mode(Some(&json!("77777"))).is_err());
        assert!(parse_mode(Some(&json!(true))).is_err());
    }

    #[test]
    fn upload_targets() {
        let b = Path::new("/workspace");
        assert_eq!(
            upload_target(Some("/tmp/x.bin"), Some("local.bin"), b).unwrap(),
            PathBuf::from("/tmp/x.bin")
        );
        assert_eq!(
            upload_target(Some("/nonexistent-dir/"), Some("../evil/name.txt"), b).unwrap(),
            PathBuf::from("/nonexistent-dir/name.txt")
        );
        assert_eq!(
            upload_target(None, Some("a.txt"), b).unwrap(),
            PathBuf::from("/workspace/a.txt")
        );
        assert!(upload_target(None, None, b).is_err());
        assert!(upload_target(Some("/"), Some(".."), b).is_err());
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        let d = content_disposition("é\"\r\n.txt");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert!(d.starts_with("attachment; filename=\"____.txt\""), "{d}");
    }
}
