//! Background processes started through `/execute/background` and `/commands/background`
//! (`spec` §8.3–8.7).
//!
//! Every job is a new process in its own session (see [`command`]), so a kill or a timeout takes
//! its whole process group. A supervisor task per job reaps it (tokio's `Child::wait`), applies
//! the deadline and records the outcome; reader tasks keep the last [`MAX_OUTPUT`] bytes of each
//! stream. Finished jobs stay listed until [`KEEP_FINISHED`] newer ones finished or their output
//! exceeds [`FINISHED_OUTPUT_BUDGET`], so a client can still read the result after the fact.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hutch_types::{format_rfc3339, AgentBoot};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lang::{random_hex, Program};
use super::run::{command, exit_code, kill_group, CommandSpec};
use crate::api::ApiError;
use crate::state::AgentState;

/// Output kept per stream and job: the *last* MiB (the end of a log is what explains it).
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// Finished jobs kept for listing.
pub const KEEP_FINISHED: usize = 200;
/// Output of finished jobs kept in total; older finished jobs are forgotten beyond it so a
/// listing (which carries the output) stays a reasonable size.
pub const FINISHED_OUTPUT_BUDGET: usize = 64 * 1024 * 1024;
/// Jobs that may run at once. Each can hold 2 × [`MAX_OUTPUT`] of output in the agent, whose
/// memory counts against the sandbox's limit.
pub const MAX_RUNNING: usize = 64;
/// How long output may still arrive after the job's process exited before it is marked done.
const DRAIN: Duration = Duration::from_millis(200);
/// How long a kill request waits for the job to be reaped, so the reply reflects it.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Still running.
    Running,
    /// Exited with code 0.
    Completed,
    /// Exited with another code or was killed by a signal not sent by the agent.
    Failed,
    /// Killed through the API.
    Killed,
    /// Killed because it passed its timeout.
    Timeout,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Killed => "killed",
            Self::Timeout => "timeout",
        }
    }
}

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Code in a language (`/execute/background`).
    Code,
    /// A command (`/commands/background`).
    Command,
}

/// A job to start.
#[derive(Debug)]
pub struct JobRequest {
    /// Program, environment and working directory.
    pub spec: CommandSpec,
    /// Code or command.
    pub kind: JobKind,
    /// Language for code (`python`, …); `command` for commands.
    pub language: String,
    /// What to show as the job's command (the code or the command line).
    pub command: String,
    /// The client's name for the job, if any.
    pub name: Option<String>,
    /// Killed after this long.
    pub timeout: Duration,
    /// A scratch directory to delete when the job ended (Go sources).
    pub scratch: Option<PathBuf>,
}

/// The last bytes of a stream.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trim in batches so a chatty job does not shift the buffer on every read.
        if self.bytes.len() > MAX_OUTPUT + MAX_OUTPUT / 4 {
            let excess = self.bytes.len() - MAX_OUTPUT;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(MAX_OUTPUT);
        String::from_utf8_lossy(&self.bytes[start..]).into_owned()
    }

    fn truncated(&self) -> bool {
        self.dropped > 0 || self.bytes.len() > MAX_OUTPUT
    }

    fn len(&self) -> usize {
        self.bytes.len().min(MAX_OUTPUT)
    }
}

/// The mutable part of a job.
#[derive(Debug)]
struct JobState {
    status: JobStatus,
    exit_code: Option<i32>,
    ended_at: Option<DateTime<Utc>>,
    duration: Option<Duration>,
    kill_requested: bool,
    stdout: Tail,
    stderr: Tail,
}

/// One background job.
#[derive(Debug)]
pub struct Job {
    /// `proc_<hex>`: what clients kill and look up.
    pub process_id: String,
    /// `exec_<hex>`.
    pub execution_id: String,
    /// The client's name, or the process id.
    pub name: String,
    /// Code or command.
    pub kind: JobKind,
    /// Language (or `command`).
    pub language: String,
    /// The code or command line.
    pub command: String,
    /// Pid of the job's process, which leads its process group.
    pub pid: u32,
    /// Wall-clock start.
    pub started_at: DateTime<Utc>,
    started: Instant,
    /// The deadline, counted from the start.
    pub timeout: Duration,
    state: Mutex<JobState>,
    done: watch::Sender<bool>,
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.status() == JobStatus::Running
    }

    /// The job as the API shows it. Both spellings the docs use are included (`start_time` and
    /// `started_at`, `end_time` and `completed_at`, `duration` and `execution_time`).
    pub fn to_json(&self) -> Value {
        let s = self.lock();
        let start = format_rfc3339(self.started_at);
        let end = s.ended_at.map(format_rfc3339);
        let duration = s
            .duration
            .unwrap_or_else(|| self.started.elapsed())
            .as_secs_f64();
        let duration = (duration * 1000.0).round() / 1000.0;
        json!({
            "process_id": self.process_id,
            "execution_id": self.execution_id,
            "name": self.name,
            "type": match self.kind { JobKind::Code => "code", JobKind::Command => "command" },
            "status": s.status.as_str(),
            "language": self.language,
            "command": self.command,
            "pid": self.pid,
            "start_time": start,
            "started_at": start,
            "end_time": end,
            "completed_at": end,
            "exit_code": s.exit_code,
            "duration": duration,
            "execution_time": duration,
            "timeout": self.timeout.as_secs(),
            "stdout": s.stdout.text(),
            "stderr": s.stderr.text(),
            "stdout_truncated": s.stdout.truncated(),
            "stderr_truncated": s.stderr.truncated(),
        })
    }

    fn output_len(&self) -> usize {
        let s = self.lock();
        s.stdout.len() + s.stderr.len()
    }

    /// Waits until the job is reaped and its status final, at most `limit`.
    pub async fn wait_done(&self, limit: Duration) -> bool {
        let mut rx = self.done.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// What a kill request found.
#[derive(Debug)]
pub enum KillOutcome {
    /// The job was running and has been killed (its status is final if `reaped`).
    Killed {
        /// The job.
        job: Arc<Job>,
        /// Whether it was reaped within the wait.
        reaped: bool,
    },
    /// The job had already ended; nothing was signalled.
    AlreadyFinished(Arc<Job>),
}

/// Every background job this agent started.
pub struct JobTable {
    jobs: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl JobTable {
    /// An empty table.
    pub fn new(_boot: &AgentBoot) -> Self {
        Self {
            jobs: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a job and returns it running. Its process is in a new session; the supervisor
    /// task owns the `Child` and reaps it.
    pub fn start(&self, state: &AgentState, req: JobRequest) -> Result<Arc<Job>, ApiError> {
        match self.spawn(state, &req) {
            Ok((job, child)) => {
                self.supervise(job.clone(), child, req.scratch);
                Ok(job)
            }
            Err(e) => {
                Program::cleanup(req.scratch.as_deref());
                Err(e)
            }
        }
    }

    fn spawn(
        &self,
        state: &AgentState,
        req: &JobRequest,
    ) -> Result<(Arc<Job>, tokio::process::Child), ApiError> {
        if self.running_count() >= MAX_RUNNING {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "TOO_MANY_PROCESSES",
                format!("{MAX_RUNNING} background processes are already running; kill some first"),
            ));
        }
        let mut cmd = command(state, &req.spec)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| {
            let program = req.spec.argv.first().map(String::as_str).unwrap_or("");
            let status = if e.kind() == std::io::ErrorKind::NotFound {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            ApiError::new(
                status,
                "COMMAND_FAILED",
                format!("cannot start {program}: {e}"),
            )
        })?;
        let process_id = format!("proc_{}", random_hex(8));
        let (done, _) = watch::channel(false);
        let job = Arc::new(Job {
            name: req
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map_or_else(|| process_id.clone(), str::to_string),
            process_id,
            execution_id: format!("exec_{}", random_hex(8)),
            kind: req.kind,
            language: req.language.clone(),
            command: req.command.clone(),
            pid: child.id().unwrap_or(0),
            started_at: Utc::now(),
            started: Instant::now(),
            timeout: req.timeout,
            state: Mutex::new(JobState {
                status: JobStatus::Running,
                exit_code: None,
                ended_at: None,
                duration: None,
                kill_requested: false,
                stdout: Tail::default(),
                stderr: Tail::default(),
            }),
            done,
        });
        self.lock().push_back(job.clone());
        self.evict();
        Ok((job, child))
    }

    fn supervise(&self, job: Arc<Job>, mut child: tokio::process::Child, scratch: Option<PathBuf>) {
        let out = spawn_reader(child.stdout.take(), job.clone(), false);
        let err = spawn_reader(child.stderr.take(), job.clone(), true);
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            let (status, timed_out) = tokio::select! {
                status = child.wait() => (status.ok(), false),
                () = tokio::time::sleep(job.timeout) => {
                    kill_group(job.pid);
                    (child.wait().await.ok(), true)
                }
            };
            // Output written just before the exit may still be in the pipes. Readers keep
            // running past this (a process the job left behind may still write).
            let deadline = tokio::time::Instant::now() + DRAIN;
            for mut reader in [out, err] {
                let _ = tokio::time::timeout_at(deadline, &mut reader).await;
            }
            {
                let mut s = job.lock();
                let code = status.map(exit_code).unwrap_or(-1);
                s.exit_code = Some(code);
                s.ended_at = Some(Utc::now());
                s.duration = Some(job.started.elapsed());
                s.status = if s.kill_requested {
                    JobStatus::Killed
                } else if timed_out {
                    JobStatus::Timeout
                } else if code == 0 {
                    JobStatus::Completed
                } else {
                    JobStatus::Failed
                };
            }
            job.done.send_replace(true);
            Program::cleanup(scratch.as_deref());
            evict(&jobs);
        });
    }

    /// A job by its `process_id`.
    pub fn get(&self, process_id: &str) -> Option<Arc<Job>> {
        self.lock()
            .iter()
            .find(|j| j.process_id == process_id)
            .cloned()
    }

    /// The running job whose process has `pid`.
    pub fn running_by_pid(&self, pid: u32) -> Option<Arc<Job>> {
        self.lock()
            .iter()
            .find(|j| j.pid == pid && j.is_running())
            .cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.lock().iter().cloned().collect()
    }

    /// Jobs still running.
    pub fn running_count(&self) -> usize {
        self.lock().iter().filter(|j| j.is_running()).count()
    }

    /// Kills a job's whole process group and waits (briefly) until it is reaped.
    pub async fn kill(&self, job: Arc<Job>) -> KillOutcome {
        {
            let mut s = job.lock();
            if s.status != JobStatus::Running {
                drop(s);
                return KillOutcome::AlreadyFinished(job);
            }
            s.kill_requested = true;
        }
        kill_group(job.pid);
        let reaped = job.wait_done(KILL_WAIT).await;
        KillOutcome::Killed { job, reaped }
    }

    fn evict(&self) {
        evict(&self.jobs);
    }
}

/// Forgets the oldest finished jobs beyond [`KEEP_FINISHED`] or [`FINISHED_OUTPUT_BUDGET`].
fn evict(jobs: &Mutex<VecDeque<Arc<Job>>>) {
    let mut jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
    let finished: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| !j.is_running())
        .map(|(i, j)| (i, j.output_len()))
        .collect();
    let mut count = finished.len();
    let mut bytes: usize = finished.iter().map(|(_, b)| b).sum();
    let mut remove = Vec::new();
    for (i, b) in finished {
        if count <= KEEP_FINISHED && bytes <= FINISHED_OUTPUT_BUDGET {
            break;
        }
        remove.push(i);
        count -= 1;
        bytes -= b;
    }
    for i in remove.into_iter().rev() {
        jobs.remove(i);
    }
}

/// Copies a pipe into the job's tail buffer until EOF.
fn spawn_reader<R>(reader: Option<R>, job: Arc<Job>, stderr: bool) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let Some(mut reader) = reader else { return };
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut s = job.lock();
                    let tail = if stderr { &mut s.stderr } else { &mut s.stdout };
                    tail.push(&chunk[..n]);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        for i in 0..200_000u32 {
            t.push(format!("{i:09}\n").as_bytes());
        }
        let text = t.text();
        assert!(text.len() <= MAX_OUTPUT);
        assert!(text.ends_with("000199999\n"));
        assert!(t.truncated());
        let mut small = Tail::default();
        small.push(b"hi\n");
        assert_eq!(small.text(), "hi\n");
        assert!(!small.truncated());
    }

    #[test]
    fn tail_of_many_pushes_is_bounded() {
        let mut t = Tail::default();
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            t.push(&block);
        }
        assert!(t.bytes.len() <= MAX_OUTPUT + MAX_OUTPUT / 4);
        assert_eq!(t.len(), MAX_OUTPUT);
        assert_eq!(t.dropped as usize + t.bytes.len(), 100 * 64 * 1024);
    }
}
