//! Background jobs and the process list (`spec` §7, §8.3–8.5, §8.7).
//!
//! * `POST /execute/background` — code in a new process (never a shared interpreter).
//! * `POST /commands/background` — `command` + `args` as argv (`/bin/sh -c command` without
//!   args, like `/commands/run`).
//! * `GET /execute/processes`, `GET /execute/processes/{process_id}` — the job table.
//! * `POST|DELETE /execute/kill/{process_id}`, `POST|DELETE /execute/kill?process_id=` — kill a
//!   job's process group.
//! * `GET /processes` — every process of the sandbox from `/proc`, background jobs merged in
//!   (the async SDK's `list_processes()` reads this path and looks for job fields).
//! * `POST /processes/{id}/kill` — the async SDK's `kill_process()`: a job by `process_id`, or a
//!   numeric pid.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};
use crate::process::lang::{self, Language};
use crate::process::{procfs, CommandSpec, Job, JobKind, JobRequest, KillOutcome};

/// Timeout of a background job when the request names none (the SDK's default for code).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest timeout accepted; a job meant to run "forever" (a server) gets this.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(execute_background))
        .routes(routes!(commands_background))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(kill_by_query, kill_by_query_delete))
        .routes(routes!(kill_by_path, kill_by_path_delete))
        .routes(routes!(system_processes))
        .routes(routes!(kill_any))
}

/// The body of `POST /execute/background`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BackgroundCodeRequest)]
struct BackgroundCode {
    /// The code to run, in a process of its own (never a shared interpreter context).
    code: String,
    /// `python` (default), `javascript`, `bash` or `go`.
    #[serde(default)]
    language: Option<String>,
    /// Seconds before the job is killed (default 300, at most 7 days).
    #[serde(default)]
    timeout: Option<f64>,
    /// Extra environment variables for the job.
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    /// A name to show in the process list.
    #[serde(default)]
    name: Option<String>,
    /// Working directory (also `working_dir`). Not sent by the SDK (its docstring says there is
    /// none), accepted anyway.
    #[serde(default, alias = "working_dir")]
    workdir: Option<String>,
}

/// The body of `POST /commands/background`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BackgroundCommandRequest)]
struct BackgroundCommand {
    /// The program, or with no `args` a shell command line (`/bin/sh -c command`).
    command: String,
    /// Arguments: `command` is then run directly as argv, no shell.
    #[serde(default)]
    args: Option<Vec<String>>,
    /// Seconds before the job is killed (default 300, at most 7 days).
    #[serde(default)]
    timeout: Option<f64>,
    /// Working directory (also `working_dir`).
    #[serde(default, alias = "working_dir")]
    workdir: Option<String>,
    /// Extra environment variables for the job.
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    /// A name to show in the process list.
    #[serde(default)]
    name: Option<String>,
}

/// The reply to a started job.
const STARTED: &str = "`process_id`, `execution_id`, `status` (`running`), `start_time`, \
                       `name`, `message`, `pid`, `language`, `timeout` (seconds), `timestamp`";
/// A job as the job routes show it.
const JOB: &str = "`process_id`, `execution_id`, `name`, `type` (`code` or `command`), `status` \
                   (`running`, `completed`, `failed`, `killed` or `timeout`), `language`, \
                   `command`, `pid`, `start_time`, `end_time`, `exit_code`, `duration` \
                   (seconds), `timeout`, `stdout`, `stderr`, `stdout_truncated`, \
                   `stderr_truncated`, and the aliases `started_at`, `completed_at`, \
                   `execution_time`";
/// The reply to a kill.
const KILLED: &str = "`success` (true), `message`, `process_id`, `execution_id`, `pid`, \
                      `status`, `exit_code`, `already_finished` (nothing was signalled), \
                      `timestamp`";
/// Why a job could not start.
const START_400: &str = "Invalid body, empty code or command, unknown language, missing \
                         runtime, bad working directory, or a program that does not exist";

/// A request's timeout in seconds; missing, zero, negative or not a number → the default.
fn job_timeout(secs: Option<f64>) -> Duration {
    match secs {
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s.min(MAX_TIMEOUT.as_secs_f64()))
        }
        _ => DEFAULT_TIMEOUT,
    }
}

fn started_reply(job: &Job, message: &str) -> Json<Value> {
    Json(json!({
        "process_id": job.process_id,
        "execution_id": job.execution_id,
        "status": "running",
        "start_time": hutch_types::format_rfc3339(job.started_at),
        "name": job.name,
        "message": message,
        "pid": job.pid,
        "language": job.language,
        "timeout": job.timeout.as_secs(),
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

/// Run code as a background job.
#[utoipa::path(post, path = "/execute/background", tag = "processes",
    operation_id = "execute_background",
    request_body = BackgroundCode,
    responses(
        (status = 200, body = Object, description = STARTED),
        (status = 400, body = AgentError, description = START_400),
        (status = 409, body = AgentError, description = "`TOO_MANY_PROCESSES`"),
        (status = 422, body = AgentError, description = "The job could not be started"),
    ),
    security(("bearer" = [])))]
async fn execute_background(
    Extract(state): Extract<State>,
    body: Result<Json<BackgroundCode>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    if req.code.trim().is_empty() {
        return Err(ApiError::invalid("code must not be empty"));
    }
    let language = Language::parse(req.language.as_deref().unwrap_or(""))?;
    let env = state.environment(req.env.as_ref());
    let program = lang::program(language, &req.code, &env)?;
    let job = state.jobs.start(
        &state,
        JobRequest {
            spec: CommandSpec {
                argv: program.argv,
                env,
                workdir: state.workdir(req.workdir.as_deref()),
            },
            kind: JobKind::Code,
            language: language.name().into(),
            command: req.code,
            name: req.name,
            timeout: job_timeout(req.timeout),
            scratch: program.scratch,
        },
    )?;
    Ok(started_reply(&job, "Background execution started"))
}

/// Run a command as a background job.
#[utoipa::path(post, path = "/commands/background", tag = "processes",
    operation_id = "commands_background",
    request_body = BackgroundCommand,
    responses(
        (status = 200, body = Object, description = STARTED),
        (status = 400, body = AgentError, description = START_400),
        (status = 409, body = AgentError, description = "`TOO_MANY_PROCESSES`"),
        (status = 422, body = AgentError, description = "`COMMAND_FAILED`: the program could \
            not be started"),
    ),
    security(("bearer" = [])))]
async fn commands_background(
    Extract(state): Extract<State>,
    body: Result<Json<BackgroundCommand>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    if req.command.trim().is_empty() {
        return Err(ApiError::invalid("command must not be empty"));
    }
    // Same argv rule as `/commands/run` (spec §8.6): never `sh -c "bash"` with the args lost.
    let (argv, shown) = match req.args {
        Some(args) => {
            let shown = std::iter::once(req.command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            (std::iter::once(req.command).chain(args).collect(), shown)
        }
        None => (
            vec!["/bin/sh".into(), "-c".into(), req.command.clone()],
            req.command,
        ),
    };
    let job = state.jobs.start(
        &state,
        JobRequest {
            spec: CommandSpec {
                argv,
                env: state.environment(req.env.as_ref()),
                workdir: state.workdir(req.workdir.as_deref()),
            },
            kind: JobKind::Command,
            language: "command".into(),
            command: shown,
            name: req.name,
            timeout: job_timeout(req.timeout),
            scratch: None,
        },
    )?;
    Ok(started_reply(&job, "Background command started"))
}

/// List background jobs.
#[utoipa::path(get, path = "/execute/processes", tag = "processes", operation_id = "list_jobs",
    responses((status = 200, body = Object, description = "`processes` (jobs, oldest first; \
        see `GET /execute/processes/{process_id}`), `count`, `timestamp`")),
    security(("bearer" = [])))]
async fn list_jobs(Extract(state): Extract<State>) -> Json<Value> {
    let processes: Vec<Value> = state.jobs.list().iter().map(|j| j.to_json()).collect();
    Json(json!({
        "count": processes.len(),
        "processes": processes,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

/// One background job.
#[utoipa::path(get, path = "/execute/processes/{process_id}", tag = "processes",
    operation_id = "get_job",
    params(("process_id" = String, Path, description = "Job id (`proc_…`)")),
    responses(
        (status = 200, body = Object, description = JOB),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn get_job(
    Extract(state): Extract<State>,
    Path(process_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .get(&process_id)
        .ok_or_else(|| not_found(&process_id))?;
    Ok(Json(job.to_json()))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "PROCESS_NOT_FOUND",
        format!("Process not found: {id}"),
    )
    .with_details(json!({"process_id": id}))
}

/// Kill a background job.
///
/// Kills the job's whole process group. Killing a job that already ended is not an error.
#[utoipa::path(post, path = "/execute/kill/{process_id}", tag = "processes",
    operation_id = "kill_job",
    params(("process_id" = String, Path, description = "Job id (`proc_…`)")),
    responses(
        (status = 200, body = Object, description = KILLED),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn kill_by_path(
    Extract(state): Extract<State>,
    Path(process_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    kill_job(&state, &process_id).await
}

/// Kill a background job (`DELETE` form).
///
/// Same as `POST /execute/kill/{process_id}`.
#[utoipa::path(delete, path = "/execute/kill/{process_id}", tag = "processes",
    operation_id = "kill_job_delete",
    params(("process_id" = String, Path, description = "Job id (`proc_…`)")),
    responses(
        (status = 200, body = Object, description = KILLED),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn kill_by_path_delete(
    state: Extract<State>,
    process_id: Path<String>,
) -> Result<Json<Value>, ApiError> {
    kill_by_path(state, process_id).await
}

/// Kill a background job named in the query.
///
/// Same as `POST /execute/kill/{process_id}`.
#[utoipa::path(post, path = "/execute/kill", tag = "processes", operation_id = "kill_job_by_query",
    params(
        ("process_id" = Option<String>, Query, description = "Job id (required, or as `id`)"),
        ("id" = Option<String>, Query, description = "Same as `process_id`"),
    ),
    responses(
        (status = 200, body = Object, description = KILLED),
        (status = 400, body = AgentError, description = "`MISSING_PARAMETER`"),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn kill_by_query(
    Extract(state): Extract<State>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let Some(id) = query.get("process_id").or_else(|| query.get("id")) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MISSING_PARAMETER",
            "the process_id query parameter is required",
        ));
    };
    kill_job(&state, id).await
}

/// Kill a background job named in the query (`DELETE` form).
///
/// Same as `POST /execute/kill`.
#[utoipa::path(delete, path = "/execute/kill", tag = "processes",
    operation_id = "kill_job_by_query_delete",
    params(
        ("process_id" = Option<String>, Query, description = "Job id (required, or as `id`)"),
        ("id" = Option<String>, Query, description = "Same as `process_id`"),
    ),
    responses(
        (status = 200, body = Object, description = KILLED),
        (status = 400, body = AgentError, description = "`MISSING_PARAMETER`"),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn kill_by_query_delete(
    state: Extract<State>,
    query: Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    kill_by_query(state, query).await
}

async fn kill_job(state: &State, process_id: &str) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .get(process_id)
        .ok_or_else(|| not_found(process_id))?;
    Ok(Json(kill_reply(state.jobs.kill(job).await)))
}

/// The reply to a kill. Killing a job that already ended is not an error (the caller's goal,
/// "not running", holds); `already_finished` says nothing was signalled.
fn kill_reply(outcome: KillOutcome) -> Value {
    let (job, message, already) = match outcome {
        KillOutcome::Killed { job, reaped: true } => (job, "Process killed".to_string(), false),
        KillOutcome::Killed { job, reaped: false } => (
            job,
            "Kill signal sent; the process has not exited yet".to_string(),
            false,
        ),
        KillOutcome::AlreadyFinished(job) => {
            let message = format!("Process already finished ({})", job.status().as_str());
            (job, message, true)
        }
    };
    let view = job.to_json();
    json!({
        "success": true,
        "message": message,
        "process_id": job.process_id,
        "execution_id": job.execution_id,
        "pid": job.pid,
        "status": view["status"],
        "exit_code": view["exit_code"],
        "already_finished": already,
        "timestamp": hutch_types::now_rfc3339(),
    })
}

/// Kill a job or any sandbox process.
///
/// The async SDK's `kill_process()`: a job by `process_id`, else a numeric pid (a job's, killed
/// as a job, or any other sandbox process, which gets SIGKILL on its own).
#[utoipa::path(post, path = "/processes/{id}/kill", tag = "processes",
    operation_id = "kill_process",
    params(("id" = String, Path, description = "Job id (`proc_…`) or pid")),
    responses(
        (status = 200, body = Object, description = "For a job as `POST \
            /execute/kill/{process_id}`; for a pid: `success` (true), `message`, `process_id`, \
            `pid`, `timestamp`"),
        (status = 400, body = AgentError, description = "The pid is the sandbox's init or the \
            agent"),
        (status = 403, body = AgentError, description = "`PERMISSION_DENIED`"),
        (status = 404, body = AgentError, description = "`PROCESS_NOT_FOUND`"),
    ),
    security(("bearer" = [])))]
async fn kill_any(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.jobs.get(&id).is_some() {
        return kill_job(&state, &id).await;
    }
    let Ok(pid) = id.trim().parse::<i32>() else {
        return Err(not_found(&id));
    };
    if let Some(job) = u32::try_from(pid)
        .ok()
        .and_then(|p| state.jobs.running_by_pid(p))
    {
        return Ok(Json(kill_reply(state.jobs.kill(job).await)));
    }
    kill_pid(pid).map(Json)
}

fn kill_pid(pid: i32) -> Result<Value, ApiError> {
    if pid <= 1 || pid as u32 == std::process::id() {
        return Err(ApiError::invalid(format!(
            "pid {pid} is the sandbox's init or agent and cannot be killed"
        )));
    }
    let Some(stat) = procfs::stat(pid) else {
        return Err(not_found(&pid.to_string()));
    };
    use nix::errno::Errno;
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        Ok(()) => Ok(json!({
            "success": true,
            "message": format!("Process {pid} ({}) killed", stat.comm),
            "process_id": pid.to_string(),
            "pid": pid,
            "timestamp": hutch_types::now_rfc3339(),
        })),
        Err(Errno::ESRCH) => Err(not_found(&pid.to_string())),
        Err(e) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("cannot kill pid {pid}: {e}"),
        )),
    }
}

/// List the sandbox's processes.
///
/// Every process from `/proc` (`ps`-like fields) with background jobs merged in. A running
/// job's process carries the job's fields (`process_id`, its name and status) plus
/// `process_name`/`process_state` from `/proc`; finished jobs follow as entries of their own
/// (with zero CPU and memory) so the async SDK's `list_processes()` still sees them.
#[utoipa::path(get, path = "/processes", tag = "processes", operation_id = "list_processes",
    responses((status = 200, body = Object, description = "`processes` (`pid`, `ppid`, `name`, \
        `status`, `cpu_percent`, `memory_mb`, `command`, `user`, `threads`, `role`?; a job's \
        process carries the job's fields plus `process_name` and `process_state`; finished \
        jobs follow as entries of their own), `count`, `timestamp`")),
    security(("bearer" = [])))]
async fn system_processes(Extract(state): Extract<State>) -> Json<Value> {
    let uptime = procfs::uptime_seconds().unwrap_or(0.0);
    let users = procfs::user_names();
    let me = std::process::id() as i32;
    let jobs = state.jobs.list();
    let mut merged: HashSet<String> = HashSet::new();
    let mut items = Vec::new();
    for p in procfs::all() {
        let memory_mb = procfs::round2(p.rss_bytes() as f64 / (1024.0 * 1024.0));
        let uid = procfs::uid(p.pid);
        let mut item = json!({
            "pid": p.pid,
            "ppid": p.ppid,
            "name": p.comm,
            "status": p.state_word(),
            "cpu_percent": procfs::lifetime_cpu_percent(&p, uptime),
            "memory_mb": memory_mb,
            "command": procfs::cmdline(p.pid, &p.comm),
            "user": uid.and_then(|u| users.get(&u).cloned()).unwrap_or_else(|| uid.map_or_else(String::new, |u| u.to_string())),
            "threads": p.threads,
        });
        if p.pid == me {
            item["role"] = json!("agent");
        } else if p.pid == 1 {
            item["role"] = json!("init");
        }
        let job = u32::try_from(p.pid)
            .ok()
            .and_then(|pid| jobs.iter().find(|j| j.pid == pid && j.is_running()));
        if let Some(job) = job {
            merged.insert(job.process_id.clone());
            let mut view = job.to_json();
            if let Some(obj) = view.as_object_mut() {
                obj.insert("process_name".into(), json!(p.comm));
                obj.insert("process_state".into(), json!(p.state_word()));
                for key in ["ppid", "cpu_percent", "memory_mb", "user", "threads"] {
                    obj.insert(key.into(), item[key].clone());
                }
            }
            item = view;
        }
        items.push(item);
    }
    for job in jobs.iter().filter(|j| !merged.contains(&j.process_id)) {
        let mut view = job.to_json();
        if let Some(obj) = view.as_object_mut() {
            obj.insert("cpu_percent".into(), json!(0.0));
            obj.insert("memory_mb".into(), json!(0.0));
        }
        items.push(view);
    }
    Json(json!({
        "count": items.len(),
        "processes": items,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(job_timeout(None), DEFAULT_TIMEOUT);
        assert_eq!(job_timeout(Some(0.0)), DEFAULT_TIMEOUT);
        assert_eq!(job_timeout(Some(-3.0)), DEFAULT_TIMEOUT);
        assert_eq!(job_timeout(Some(f64::NAN)), DEFAULT_TIMEOUT);
        assert_eq!(job_timeout(Some(2.0)), Duration::from_secs(2));
        assert_eq!(job_timeout(Some(1e12)), MAX_TIMEOUT);
    }
}
