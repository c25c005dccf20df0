//! `POST /commands/run`: run `command` + `args` as argv (the SDK sends `bash -c <cmd>`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};
use crate::process::{run_to_completion, CommandSpec};

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(run))
}

/// The body of `POST /commands/run`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CommandRunRequest)]
struct RunRequest {
    /// The program, or with no `args` a shell command line (`/bin/sh -c command`).
    command: String,
    /// Arguments: `command` is then run directly as argv, no shell.
    #[serde(default)]
    args: Option<Vec<String>>,
    /// Seconds (default 120, at most a day).
    #[serde(default)]
    timeout: Option<u64>,
    /// Working directory (also accepted as `working_dir`); default the sandbox's.
    #[serde(default, alias = "working_dir")]
    workdir: Option<String>,
    /// Extra environment variables for this command.
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
}

/// Run a command to completion.
///
/// A command that fails is still HTTP 200, with its `exit_code` and `success: false`.
#[utoipa::path(post, path = "/commands/run", tag = "commands", operation_id = "commands_run",
    request_body = RunRequest,
    responses(
        (status = 200, body = Object, description = "`stdout`, `stderr`, `exit_code`, \
            `execution_time` (seconds), `success`, `command`, `pid`, `timestamp`"),
        (status = 400, body = AgentError, description = "Invalid body, empty command, bad \
            working directory, or the program does not exist"),
        (status = 408, body = AgentError, description = "`EXECUTION_TIMEOUT`: killed at the \
            timeout; `details` holds the output so far"),
        (status = 422, body = AgentError, description = "`COMMAND_FAILED`: the program could \
            not be started"),
    ),
    security(("bearer" = [])))]
async fn run(
    Extract(state): Extract<State>,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    if req.command.trim().is_empty() {
        return Err(ApiError::invalid("command must not be empty"));
    }
    let argv = match req.args {
        Some(args) => std::iter::once(req.command.clone()).chain(args).collect(),
        None => vec!["/bin/sh".into(), "-c".into(), req.command.clone()],
    };
    let timeout = Duration::from_secs(req.timeout.unwrap_or(120).clamp(1, 24 * 3600));
    let spec = CommandSpec {
        argv,
        env: state.environment(req.env.as_ref()),
        workdir: state.workdir(req.workdir.as_deref()),
    };
    let out = run_to_completion(&state, &spec, timeout).await?;
    let body = json!({
        "stdout": out.stdout,
        "stderr": out.stderr,
        "exit_code": out.exit_code,
        "execution_time": out.duration.as_secs_f64(),
        "success": out.exit_code == 0 && !out.timed_out,
        "command": req.command,
        "pid": out.pid,
        "timestamp": hutch_types::now_rfc3339(),
    });
    if out.timed_out {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "EXECUTION_TIMEOUT",
            format!("command timed out after {} s", timeout.as_secs()),
        )
        .with_details(body));
    }
    Ok(Json(body))
}
