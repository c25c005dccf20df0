//! Wire types of hutch's sessions and artifacts extension (`docs/sessions-api.md`): persistent
//! Python execution contexts whose state outlives sandboxes, and the files executions produce.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// `[A-Za-z0-9_-]{1,128}`; generated when absent. An existing id returns that session (200).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Template for the sandbox the session creates (default `code-interpreter`).
    #[serde(default)]
    pub template: Option<String>,
    /// Run in this existing sandbox instead of creating one (it is not killed with the session).
    #[serde(default)]
    pub sandbox_id: Option<String>,
    /// Environment of the sandbox the session creates.
    #[serde(default)]
    pub env_vars: Option<BTreeMap<String, String>>,
    /// Auto-kill delay of the sandbox the session creates; the session outlives it.
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
}

/// A session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionObject {
    /// The id.
    pub session_id: String,
    /// The sandbox it runs in now; null until the first execution (or after its sandbox died).
    pub sandbox_id: Option<String>,
    /// Template of the sandboxes it creates.
    pub template: String,
    /// Always `python`.
    pub language: String,
    /// Always `active`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Executions so far.
    pub execution_count: i64,
    /// Names the last save kept (values and definitions).
    pub variables: Vec<String>,
    /// Where figures and files are collected in the sandbox.
    pub artifacts_dir: String,
    /// The request's id.
    pub request_id: Option<String>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// Always `list`.
    pub object: String,
    /// Every session, oldest first.
    pub data: Vec<SessionObject>,
    /// Always false.
    pub has_more: bool,
}

/// `POST /v1/sessions/{sid}/execute`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionExecuteRequest {
    /// Python code.
    pub code: String,
    /// Opt into the result cache under this key (keyed by code *and* key).
    #[serde(default)]
    pub cache_key: Option<String>,
    /// Seconds (default 300, at most a day).
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// A file an execution produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactObject {
    /// `art_…`.
    pub id: String,
    /// File name.
    pub name: String,
    /// Absolute path in the sandbox.
    pub path: String,
    /// MIME type.
    #[serde(rename = "type")]
    pub mime: String,
    /// `plots`, `images`, `videos`, `data`, `code`, `logs` or `other`.
    pub category: String,
    /// Bytes.
    pub size: u64,
    /// The execution that produced it.
    pub execution_id: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A name that was not saved or restored, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DroppedName {
    /// The variable.
    pub name: String,
    /// Why (e.g. `not picklable: TypeError: cannot pickle '_thread.lock' object`).
    pub reason: String,
}

/// What a restore brought back into a fresh kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RestoreReport {
    /// Names restored (by pickle or by replaying their definition).
    pub restored: Vec<String>,
    /// Names lost.
    pub dropped: Vec<DroppedName>,
}

/// What a save kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PersistReport {
    /// Names saved.
    pub saved: Vec<String>,
    /// Names that could not be saved.
    pub dropped: Vec<DroppedName>,
}

/// The result of a session execution (failing code and timeouts are `success: false`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionObject {
    /// Ran to its end without an exception.
    pub success: bool,
    /// `<Type>: <message>`.
    pub error: Option<String>,
    /// The exception's class, e.g. `ZeroDivisionError`; `TimeoutError` for a timeout.
    pub error_type: Option<String>,
    /// The formatted traceback.
    pub traceback: Option<String>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Seconds.
    pub execution_time: f64,
    /// The timeout applied, seconds.
    pub timeout: u64,
    /// Files the execution produced.
    pub artifacts: Vec<ArtifactObject>,
    /// Served from the result cache.
    pub cache_hit: bool,
    /// The execution's id.
    pub execution_id: String,
    /// The session.
    pub session_id: String,
    /// The sandbox it ran in.
    pub sandbox_id: String,
    /// Set on the first execution after state was restored into a sandbox.
    pub restored: Option<RestoreReport>,
    /// What was saved after it (null when it failed).
    pub persisted: Option<PersistReport>,
    /// The text of the final expression's value, if any.
    pub result: Option<String>,
    /// The run hit its timeout (then `error_type` is `TimeoutError`).
    pub timed_out: bool,
}

/// One entry of a session's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionHistoryEntry {
    /// The execution's id.
    pub execution_id: String,
    /// RFC 3339.
    pub timestamp: String,
    /// The code.
    pub code: String,
    /// Hex SHA-256 of the code.
    pub code_digest: String,
    /// Seconds.
    pub execution_time: f64,
    /// Ran without error.
    pub success: bool,
    /// Served from the result cache.
    pub cache_hit: bool,
    /// The exception's class.
    pub error_type: Option<String>,
    /// How many artifacts it produced.
    pub artifacts: i64,
}

/// `GET /v1/sessions/{sid}/history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionHistory {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<SessionHistoryEntry>,
}

/// `GET /v1/sessions/{sid}/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionStats {
    /// The session.
    pub session_id: String,
    /// Executions so far.
    pub total_executions: i64,
    /// Seconds.
    pub average_execution_time: f64,
    /// Hits over executions (0 when none).
    pub cache_hit_ratio: f64,
    /// Executions served from the result cache.
    pub cache_hits: i64,
    /// Executions that ran.
    pub cache_misses: i64,
    /// Compiled cells cached in the session's sandbox now.
    pub cached_compilations: u64,
    /// Artifacts recorded.
    pub artifacts_count: usize,
}

/// `GET /v1/sessions/{sid}/artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionArtifactList {
    /// Always `list`.
    pub object: String,
    /// Oldest first.
    pub data: Vec<ArtifactObject>,
}

/// `POST /v1/sessions/{sid}/save`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionSaved {
    /// The session.
    pub session_id: String,
    /// Names saved.
    pub saved: Vec<String>,
    /// RFC 3339.
    pub timestamp: String,
}

/// `DELETE /v1/sessions/{sid}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionDeleted {
    /// The session.
    pub session_id: String,
    /// Always `deleted`.
    pub status: String,
}

/// `DELETE /v1/sessions/{sid}/artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactsRemoved {
    /// How many.
    pub removed: usize,
}

/// `POST /v1/sessions/{sid}/cache/clear`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CacheCleared {
    /// For people.
    pub message: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// The agent's `POST /execute` reply, as far as sessions read it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentExecution {
    /// Ran without error.
    #[serde(default)]
    pub success: bool,
    /// Standard output.
    #[serde(default)]
    pub stdout: String,
    /// Standard error.
    #[serde(default)]
    pub stderr: String,
    /// Seconds.
    #[serde(default)]
    pub execution_time: f64,
    /// The execution's id.
    #[serde(default)]
    pub execution_id: String,
    /// Served from the result cache.
    #[serde(default)]
    pub cache_hit: bool,
    /// `<Type>: <message>` or a message.
    #[serde(default)]
    pub error: Option<String>,
    /// The exception: `name`, `value`, `traceback` (lines).
    #[serde(default)]
    pub exception: Option<Value>,
    /// The final expression's text.
    #[serde(default)]
    pub result: Option<String>,
    /// The run hit its deadline.
    #[serde(default)]
    pub timed_out: bool,
    /// Files produced.
    #[serde(default)]
    pub artifacts: Vec<ArtifactObject>,
    /// Restore report.
    #[serde(default)]
    pub restored: Option<RestoreReport>,
    /// Save report.
    #[serde(default)]
    pub persisted: Option<PersistReport>,
}
