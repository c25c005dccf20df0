//! Runs a process to completion with a deadline, collecting capped stdout and stderr.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::api::ApiError;
use crate::state::AgentState;

/// Output kept per stream; more is dropped (with a marker) so a runaway program cannot exhaust
/// the agent's memory.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

/// A process to start.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments (`argv[0]` is looked up in the environment's `PATH`).
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory (created if missing).
    pub workdir: String,
}

/// What a finished process left.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its pid (in the sandbox's namespace).
    pub pid: u32,
    /// Captured stdout, lossily decoded.
    pub stdout: String,
    /// Captured stderr, lossily decoded.
    pub stderr: String,
    /// Exit code; 128+N when killed by signal N; -1 if unknown.
    pub exit_code: i32,
    /// Wall time from start to exit.
    pub duration: Duration,
    /// True when the deadline passed and the group was killed.
    pub timed_out: bool,
}

/// Builds a user command: a new session (so the whole group can be killed) and an OOM score that
/// makes user processes die before the agent. Landlock needs no step here: the agent already runs
/// in the sandbox's one user domain (see `pid1`), which every child inherits.
pub fn command(_state: &AgentState, spec: &CommandSpec) -> Result<Command, ApiError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(ApiError::invalid("empty command"));
    };
    if let Err(e) = std::fs::create_dir_all(&spec.workdir) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PATH",
            format!("working directory {}: {e}", spec.workdir),
        ));
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.workdir)
        .kill_on_drop(true);
    // SAFETY: the closure runs between fork and exec in the child of a multi-threaded process,
    // so it may only make async-signal-safe calls: setsid and open/write/close on a static path;
    // it allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            raise_oom_score();
            Ok(())
        });
    }
    Ok(cmd)
}

/// Makes the calling process the OOM killer's preferred victim over the agent (whose score stays
/// 0), so a memory hog in the sandbox never takes the agent down. Async-signal-safe: only
/// open/write/close on a static path, for use between fork and exec.
#[allow(unsafe_code)]
pub fn raise_oom_score() {
    let path = c"/proc/self/oom_score_adj";
    // SAFETY: `path` is a NUL-terminated literal; the descriptor is used only here and closed.
    // Failure is harmless (the score just stays 0).
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"500".as_ptr().cast(), 3);
            libc::close(fd);
        }
    }
}

/// Runs `spec` until it exits or `timeout` passes; on timeout its whole process group is killed.
pub async fn run_to_completion(
    state: &AgentState,
    spec: &CommandSpec,
    timeout: Duration,
) -> Result<Output, ApiError> {
    let mut cmd = command(state, spec)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(
            code,
            "COMMAND_FAILED",
            format!("cannot start {}: {e}", spec.argv[0]),
        )
    })?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (out_cap, out_task) = spawn_reader(stdout);
    let (err_cap, err_task) = spawn_reader(stderr);

    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            kill_group(pid);
            (child.wait().await.ok(), true)
        }
    };
    // A background job (`server &`) keeps the pipes open after the command itself exited; it is
    // meant to keep running, so take what is there after a short drain instead of waiting for it.
    let stdout = finish_reader(out_cap, out_task).await;
    let stderr = finish_reader(err_cap, err_task).await;
    Ok(Output {
        pid,
        stdout,
        stderr,
        exit_code: status.map(exit_code).unwrap_or(-1),
        duration: start.elapsed(),
        timed_out,
    })
}

/// SIGKILLs the process group led by `pid` (every process started by the command that did not
/// start its own session).
pub fn kill_group(pid: u32) {
    if pid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The shell convention: exit code, or 128 + signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Output collected by a reader task, readable while the task still runs.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

type SharedCapture = std::sync::Arc<std::sync::Mutex<Capture>>;

/// How long output may keep arriving after the command exited.
const DRAIN: Duration = Duration::from_millis(100);

/// Starts a task copying `reader` into a shared, capped buffer.
fn spawn_reader<R>(reader: Option<R>) -> (SharedCapture, tokio::task::JoinHandle<()>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let cap = SharedCapture::default();
    let sink = cap.clone();
    let task = tokio::spawn(async move {
        let Some(mut reader) = reader else { return };
        let mut chunk = [0u8; 16384];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut c = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if c.bytes.len() + n <= MAX_CAPTURE {
                        c.bytes.extend_from_slice(&chunk[..n]);
                    } else {
                        c.truncated = true;
                    }
                }
            }
        }
    });
    (cap, task)
}

/// Waits up to [`DRAIN`] for the reader to reach EOF (a background job may hold the pipe open
/// forever), then returns what was captured.
async fn finish_reader(cap: SharedCapture, task: tokio::task::JoinHandle<()>) -> String {
    let abort = task.abort_handle();
    if tokio::time::timeout(DRAIN, task).await.is_err() {
        abort.abort();
    }
    let c = cap.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = String::from_utf8_lossy(&c.bytes).into_owned();
    if c.truncated {
        s.push_str("\n[output truncated by hutch]\n");
    }
    s
}
