//! Code execution (`spec/hopx-protocol.md` §8.1, §8.2, §10.1) and the interpreter's contexts,
//! history and statistics.
//!
//! * `POST /execute` (alias `/execute/rich`) — run code, answer with the result. A failing
//!   program is HTTP 200 with `success: false`; a timeout is 408 `EXECUTION_TIMEOUT`.
//! * `GET /execute/stream` — WebSocket: `stdout`/`stderr`/`display` frames as output appears,
//!   then `result`, `error` (on failure) and `complete`.
//! * `POST /execute/async` — run in the background and POST the result, HMAC-signed, to
//!   `callback_url`.
//! * `POST|GET /contexts`, `GET|DELETE /contexts/{id}`, `POST /contexts/{id}/restart` —
//!   independent interpreter contexts (E2B's code contexts); `context_id` on execute picks one.
//! * `GET /execute/history?limit=`, `GET /execute/stats`.

#[path = "execute_async.rs"]
mod callback;
#[path = "execute_contexts.rs"]
mod contexts;
#[path = "execute_stream.rs"]
mod stream;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};
use crate::kernels::{EventSink, ExecSpec, KernelError, Language, Outcome, RunStatus};

/// `timeout` when a request gives none (the SDK's own default for `run_code`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest accepted timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// MIME type → the response key the SDK reads (one value each; the last output wins).
const MIME_KEYS: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("text/html", "html"),
    ("application/json", "json"),
    ("application/vnd.dataframe+json", "dataframe"),
    ("image/svg+xml", "svg"),
    ("text/markdown", "markdown"),
    ("text/latex", "latex"),
    ("image/jpeg", "jpeg"),
];

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(execute))
        .routes(routes!(execute_rich))
        .merge(stream::router())
        .merge(callback::router())
        .merge(contexts::router())
}

/// The body of `/execute`, `/execute/async` and the stream's first message. Unknown fields are
/// ignored (the stream's `type`, for one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ExecuteRequest)]
pub(super) struct ExecuteBody {
    /// The code to run (required).
    #[serde(default)]
    #[schema(required = true, value_type = String)]
    code: Option<String>,
    /// `python` (default), `javascript` (`js`, `node`), `bash` (`sh`, `shell`) or `go`.
    #[serde(default)]
    language: Option<String>,
    /// Working directory. The SDK sends `workdir`; the HopX docs say `working_dir` (accepted).
    #[serde(default, alias = "working_dir")]
    workdir: Option<String>,
    /// Seconds; fractions allowed. Default 120 (`/execute`), 60 (stream), 1800 (async); at most
    /// a day.
    #[serde(default)]
    timeout: Option<f64>,
    /// Extra environment variables for this run (also accepted as `env_vars`).
    #[serde(default, alias = "env_vars")]
    env: Option<BTreeMap<String, String>>,
    /// The interpreter context to run in (`/contexts`); default the language's own.
    #[serde(default)]
    context_id: Option<String>,
    /// Opt into the result cache.
    #[serde(default)]
    cache: Option<bool>,
    /// Opt into the result cache under this key (part of the cache key, so a new key forces a
    /// fresh run).
    #[serde(default)]
    cache_key: Option<String>,
    /// `/execute/async` only (required there): where the result is POSTed; plain `http://`.
    #[serde(default)]
    callback_url: Option<String>,
    /// `/execute/async` only: headers sent with the callback.
    #[serde(default)]
    callback_headers: Option<BTreeMap<String, String>>,
    /// `/execute/async` only: signs the callback body (`X-HOPX-Signature: sha256=<hex HMAC>`).
    #[serde(default)]
    callback_signature_secret: Option<String>,
    /// Record the files the execution produces (figures, files written under the working
    /// directory) and list them in `artifacts` (`GET /artifacts` fetches them).
    #[serde(default)]
    capture_artifacts: Option<bool>,
    /// Run in this session's own Python context: its saved state is restored into a fresh
    /// kernel first and saved again after every successful run (`docs/sessions-api.md`).
    /// `[A-Za-z0-9_-]{1,128}`. Implies `capture_artifacts`.
    #[serde(default)]
    session_id: Option<String>,
}

/// What `/execute` answers with (200, and inside `details` of a 408).
const EXECUTE_RESULT: &str = "`success`, `stdout`, `stderr`, `exit_code`, `execution_time` \
    (seconds), `language`, `execution_id`, `context_id`, `execution_count`, `result` (text of \
    the last expression), `outputs` (rich outputs: `type`, `data` by MIME type), `status`, \
    `timed_out`, `kernel_restarted`, `cache_hit`, `timestamp`; when set: `truncated`, `error`, \
    `exception` {`name`, `value`, `traceback`}, `message`, the last rich output per kind \
    as `png`, `html`, `json`, `dataframe`, `svg`, `markdown`, `latex`, `jpeg`, `artifacts` \
    (with `capture_artifacts`), and `session_id`, `restored`, `persisted` (with `session_id`). A program that \
    fails is still 200, with `success: false`";

impl ExecuteBody {
    /// Parses a request body; any JSON content type (or none) is accepted.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "request body must be a JSON object with `code`",
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
    }

    /// Validates the request and turns it into what the interpreter runs.
    pub(super) fn spec(&self, default_timeout: Duration) -> Result<ExecSpec, ApiError> {
        let Some(code) = &self.code else {
            return Err(ApiError::invalid("`code` is required"));
        };
        let language = Language::parse(self.language.as_deref().unwrap_or(""))?;
        let timeout = match self.timeout {
            Some(t) if t.is_finite() && t > 0.0 => {
                Duration::from_secs_f64(t.min(MAX_TIMEOUT.as_secs_f64()))
            }
            _ => default_timeout,
        };
        let session = match self.session_id.as_deref() {
            Some(sid) => Some(
                hutch_types::SessionId::parse(sid)
                    .map_err(|e| ApiError::invalid(e.to_string()))?
                    .to_string(),
            ),
            None => None,
        };
        if session.is_some()
            && self
                .context_id
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty())
        {
            return Err(ApiError::invalid(
                "`session_id` and `context_id` cannot be combined: a session has its own context",
            ));
        }
        let key = self.cache_key.as_deref().filter(|k| !k.is_empty());
        let cache = match (self.cache, key) {
            (Some(false), _) => None,
            (Some(true), k) => Some(k.unwrap_or("").to_string()),
            (None, Some(k)) => Some(k.to_string()),
            (None, None) => None,
        };
        Ok(ExecSpec {
            language,
            code: code.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone().filter(|w| !w.trim().is_empty()),
            timeout,
            context_id: self.context_id.clone().filter(|c| !c.trim().is_empty()),
            cache,
            execution_id: None,
            capture_artifacts: self.capture_artifacts.unwrap_or(false) || session.is_some(),
            session,
        })
    }
}

/// Run code and wait for the result.
#[utoipa::path(post, path = "/execute", tag = "execute", operation_id = "execute",
    request_body = ExecuteBody,
    responses(
        (status = 200, body = Object, description = EXECUTE_RESULT),
        (status = 400, body = AgentError, description = "Invalid body, unknown language, \
            missing runtime, bad working directory, or a context of another language"),
        (status = 404, body = AgentError, description = "`CONTEXT_NOT_FOUND`"),
        (status = 408, body = AgentError, description = "`EXECUTION_TIMEOUT`; `details` holds \
            the result so far"),
        (status = 422, body = AgentError, description = "`KERNEL_UNAVAILABLE`: the interpreter \
            could not be started"),
    ),
    security(("bearer" = [])))]
async fn execute(Extract(state): Extract<State>, body: Bytes) -> Response {
    let spec = match ExecuteBody::parse(&body).and_then(|b| b.spec(DEFAULT_TIMEOUT)) {
        Ok(spec) => spec,
        Err(e) => return e.into_response(),
    };
    match run(state, spec, None).await {
        Ok(outcome) => respond(&outcome),
        Err(e) => kernel_error(e).into_response(),
    }
}

/// Run code and wait for the result (alias).
///
/// Same as `POST /execute`, which already includes rich outputs.
#[utoipa::path(post, path = "/execute/rich", tag = "execute", operation_id = "execute_rich",
    request_body = ExecuteBody,
    responses(
        (status = 200, body = Object, description = EXECUTE_RESULT),
        (status = 400, body = AgentError, description = "As for `POST /execute`"),
        (status = 404, body = AgentError, description = "`CONTEXT_NOT_FOUND`"),
        (status = 408, body = AgentError, description = "`EXECUTION_TIMEOUT`"),
        (status = 422, body = AgentError, description = "`KERNEL_UNAVAILABLE`"),
    ),
    security(("bearer" = [])))]
async fn execute_rich(state: Extract<State>, body: Bytes) -> Response {
    execute(state, body).await
}

/// Runs in a task of its own: a client that disconnects cancels the run (the code is
/// interrupted) instead of abandoning a kernel mid-cell.
pub(super) async fn run(
    state: State,
    spec: ExecSpec,
    sink: Option<EventSink>,
) -> Result<Outcome, KernelError> {
    let cancel = CancellationToken::new();
    let guard = cancel.clone().drop_guard();
    let task = tokio::spawn(async move {
        let kernels = &state.kernels;
        kernels.execute(&state, spec, sink, cancel).await
    });
    let result = task
        .await
        .unwrap_or_else(|e| Err(KernelError::Setup(format!("execution task failed: {e}"))));
    guard.disarm();
    result
}

/// 200 with the result, or 408 `EXECUTION_TIMEOUT` carrying the same fields.
pub(super) fn respond(o: &Outcome) -> Response {
    let body = outcome_body(o);
    match o.status {
        RunStatus::TimedOut | RunStatus::Cancelled => {
            let message = o
                .message
                .clone()
                .unwrap_or_else(|| "execution timed out".into());
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "EXECUTION_TIMEOUT", message)
                .with_details(body)
                .into_response()
        }
        _ => Json(body).into_response(),
    }
}

/// The HopX execute response, plus hutch's extras (`outputs`, `result`, `exception`, …).
pub(super) fn outcome_body(o: &Outcome) -> Value {
    let mut body = json!({
        "success": o.success(),
        "stdout": o.stdout,
        "stderr": o.stderr,
        "exit_code": o.exit_code,
        "execution_time": o.duration.as_secs_f64(),
        "language": o.language.name(),
        "execution_id": o.execution_id,
        "context_id": o.context_id,
        "execution_count": o.execution_count,
        "result": o.result_text(),
        "outputs": o.outputs,
        "status": o.status,
        "timed_out": o.status == RunStatus::TimedOut,
        "kernel_restarted": o.kernel_restarted,
        "cache_hit": o.cache_hit,
        "timestamp": hutch_types::now_rfc3339(),
    });
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    if o.truncated {
        obj.insert("truncated".into(), Value::Bool(true));
    }
    if let Some(e) = &o.exception {
        let text = if e.value.is_empty() {
            e.name.clone()
        } else {
            format!("{}: {}", e.name, e.value)
        };
        obj.insert("error".into(), Value::String(text));
        obj.insert("exception".into(), json!(e));
    } else if let Some(m) = &o.message {
        obj.insert("error".into(), Value::String(m.clone()));
    }
    if let Some(m) = &o.message {
        obj.insert("message".into(), Value::String(m.clone()));
    }
    if o.session_id.is_some() || !o.artifacts.is_empty() {
        obj.insert("artifacts".into(), json!(o.artifacts));
    }
    if let Some(sid) = &o.session_id {
        obj.insert("session_id".into(), json!(sid));
        obj.insert("restored".into(), json!(o.session_restored));
        obj.insert("persisted".into(), json!(o.session_persisted));
    }
    for (mime, key) in MIME_KEYS {
        if let Some(v) = o.last_of(mime) {
            obj.insert((*key).into(), v.clone());
        }
    }
    body
}

/// Maps interpreter errors onto the agent's error body. None is 5xx: the SDK retries those and
/// would run the code again.
pub(super) fn kernel_error(e: KernelError) -> ApiError {
    let msg = e.to_string();
    match e {
        KernelError::Language(e) => e.into(),
        KernelError::ContextNotFound(id) => {
            ApiError::new(StatusCode::NOT_FOUND, "CONTEXT_NOT_FOUND", msg)
                .with_details(json!({"context_id": id}))
        }
        KernelError::ContextLanguage { .. }
        | KernelError::NoContexts(_)
        | KernelError::Session(_) => ApiError::invalid(msg),
        KernelError::TooManyContexts => {
            ApiError::new(StatusCode::CONFLICT, "TOO_MANY_CONTEXTS", msg)
        }
        KernelError::Workdir { path, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PATH", msg)
                .with_details(json!({"path": path}))
        }
        KernelError::Spawn { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ApiError::invalid(msg)
        }
        KernelError::Cancelled => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "EXECUTION_TIMEOUT", msg)
        }
        KernelError::KernelStart { .. } | KernelError::Spawn { .. } | KernelError::Setup(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "KERNEL_UNAVAILABLE", msg)
        }
    }
}
