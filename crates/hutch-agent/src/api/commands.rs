//! `POST /commands/run`: run `command` + `args` as argv (the SDK sends `bash -c <cmd>`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, State};
use crate::process::{run_to_completion, CommandSpec};

pub(super) fn router() -> Router<State> {
    Router::new().route("/commands/run", post(run))
}

#[derive(Debug, Deserialize)]
struct RunRequest {
    command: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default, alias = "working_dir")]
    workdir: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
}

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
