//! A context: one kernel process and the queue of cells waiting for it.
//!
//! Cells of one context run one at a time, in arrival order (a fair async mutex is the queue);
//! different contexts run in parallel. A cell that overruns its deadline gets SIGINT
//! (KeyboardInterrupt in Python, a terminated script in Node); if it has not finished
//! [`INTERRUPT_GRACE`] later, the kernel's whole process group is killed and a new kernel is
//! started in the background. A kernel that dies by itself (the memory limit, `os._exit`) is
//! reported and replaced the same way; the response says `kernel_restarted` because every
//! variable of the old kernel is gone.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::collect::Collector;
use super::proc::{oom_kills, Done, KernelMsg, KernelProc};
use super::spawn::signal_group;
use super::{EventSink, Inner, KernelError, Language, Outcome, RunStatus, INTERRUPT_GRACE};
use crate::process::exit_code;
use crate::process::lang::{find_in_path, LangError};

/// How long a kernel may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What `GET /contexts` shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContextInfo {
    /// The context id (`default-python` for the default Python context).
    pub id: String,
    /// `python` or `javascript`.
    pub language: &'static str,
    /// The working directory the kernel starts in, if the context has its own.
    pub cwd: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// `starting`, `idle`, `busy` or `stopped` (no kernel process right now).
    pub status: &'static str,
    /// The kernel's pid inside the sandbox.
    pub pid: Option<u32>,
    /// Cells run in this context.
    pub execution_count: u64,
    /// The default context of its language (what plain `run_code` uses).
    pub default: bool,
    /// The interpreter's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How long the current kernel took to start, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    /// Why the last kernel start failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub(super) struct Context {
    pub id: String,
    pub language: Language,
    pub cwd: Option<String>,
    created_at: String,
    is_default: bool,
    slot: AsyncMutex<Option<KernelProc>>,
    pid: AtomicU32,
    busy: AtomicBool,
    starting: AtomicBool,
    deleted: AtomicBool,
    restarting: AtomicBool,
    /// Entries in the kernel's compilation cache, as it last reported.
    pub compiled: AtomicU64,
    clear_compiled: AtomicBool,
    executions: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Version and start-up time of the current kernel.
    kernel_info: Mutex<Option<(String, Duration)>>,
}

/// One cell to run.
pub(super) struct Cell<'a> {
    pub code: &'a str,
    /// The kernel's environment for this cell.
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub timeout: Duration,
    /// A session's state file: restored into a fresh kernel before the cell, written after a
    /// successful one.
    pub session_state: Option<&'a Path>,
}

/// Why a cell was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Timeout,
    Cancel,
}

/// How a cell's wait ended.
enum End {
    Done(Done),
    Killed,
    Died(Option<ExitStatus>),
}

impl Context {
    pub(super) fn new(
        id: String,
        language: Language,
        cwd: Option<String>,
        is_default: bool,
    ) -> Self {
        Self {
            id,
            language,
            cwd: cwd.filter(|c| !c.trim().is_empty()),
            created_at: hutch_types::now_rfc3339(),
            is_default,
            slot: AsyncMutex::new(None),
            pid: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            starting: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            restarting: AtomicBool::new(false),
            compiled: AtomicU64::new(0),
            clear_compiled: AtomicBool::new(false),
            executions: AtomicU64::new(0),
            last_error: Mutex::new(None),
            kernel_info: Mutex::new(None),
        }
    }

    pub(super) fn info(&self) -> ContextInfo {
        let pid = self.pid.load(Ordering::Relaxed);
        let kernel_info = self
            .kernel_info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|_| pid != 0);
        let status = if self.busy.load(Ordering::Relaxed) {
            "busy"
        } else if self.starting.load(Ordering::Relaxed) {
            "starting"
        } else if pid != 0 {
            "idle"
        } else {
            "stopped"
        };
        ContextInfo {
            id: self.id.clone(),
            language: self.language.name(),
            cwd: self.cwd.clone(),
            created_at: self.created_at.clone(),
            status,
            pid: (pid != 0).then_some(pid),
            execution_count: self.executions.load(Ordering::Relaxed),
            default: self.is_default,
            version: kernel_info.as_ref().map(|(v, _)| v.clone()),
            startup_ms: kernel_info.map(|(_, d)| d.as_secs_f64() * 1e3),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Starts the kernel if it is not running (agent start, context creation, after a kill).
    pub(super) async fn warm(ctx: Arc<Context>, inner: Arc<Inner>) {
        let mut slot = ctx.slot.lock().await;
        if ctx.deleted.load(Ordering::SeqCst) {
            return;
        }
        if let Some(k) = slot.as_mut() {
            if !k.has_exited() {
                return;
            }
        }
        ctx.set_kernel(&mut slot, None);
        let env = kernel_env(ctx.language, inner.boot_env.clone());
        let cwd = ctx
            .cwd
            .clone()
            .unwrap_or_else(|| inner.boot_workdir.clone());
        match ctx.start(&inner, env, cwd).await {
            Ok(k) => ctx.set_kernel(&mut slot, Some(k)),
            Err(e) => tracing::warn!(context = %ctx.id, error = %e, "kernel warm-up failed"),
        }
    }

    /// Kills the kernel now (ending a running cell) and starts a new one.
    pub(super) async fn restart(self: &Arc<Self>, inner: &Inner) -> Result<(), KernelError> {
        self.restarting.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 {
            signal_group(pid, Signal::SIGKILL);
        }
        let mut slot = self.slot.lock().await;
        self.restarting.store(false, Ordering::SeqCst);
        if self.deleted.load(Ordering::SeqCst) {
            return Err(KernelError::ContextNotFound(self.id.clone()));
        }
        self.set_kernel(&mut slot, None);
        let env = kernel_env(self.language, inner.boot_env.clone());
        let cwd = self
            .cwd
            .clone()
            .unwrap_or_else(|| inner.boot_workdir.clone());
        let kernel = self.start(inner, env, cwd).await?;
        self.set_kernel(&mut slot, Some(kernel));
        Ok(())
    }

    /// Marks the context deleted and kills its kernel; a queued cell then fails as not found.
    pub(super) fn delete(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        let pid = self.pid.swap(0, Ordering::SeqCst);
        if pid != 0 {
            signal_group(pid, Signal::SIGKILL);
        }
        if let Ok(mut slot) = self.slot.try_lock() {
            *slot = None;
        }
    }

    /// Asks the kernel to empty its compilation cache before its next cell; returns how many
    /// entries it held.
    pub(super) fn clear_compiled(&self) -> u64 {
        self.clear_compiled.store(true, Ordering::SeqCst);
        self.compiled.swap(0, Ordering::SeqCst)
    }

    fn set_kernel(&self, slot: &mut Option<KernelProc>, kernel: Option<KernelProc>) {
        self.pid
            .store(kernel.as_ref().map_or(0, |k| k.pid), Ordering::SeqCst);
        *self.kernel_info.lock().unwrap_or_else(|e| e.into_inner()) =
            kernel.as_ref().map(|k| (k.version.clone(), k.startup));
        self.compiled.store(0, Ordering::SeqCst);
        *slot = kernel;
    }

    async fn start(
        &self,
        inner: &Inner,
        env: Vec<(String, String)>,
        cwd: String,
    ) -> Result<KernelProc, KernelError> {
        self.starting.store(true, Ordering::SeqCst);
        let result = self.start_inner(inner, env, cwd).await;
        self.starting.store(false, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    async fn start_inner(
        &self,
        inner: &Inner,
        env: Vec<(String, String)>,
        cwd: String,
    ) -> Result<KernelProc, KernelError> {
        let dir = inner.drivers()?.clone();
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
        let missing = |program| {
            KernelError::Language(LangError::MissingRuntime {
                language: self.language.name(),
                program,
            })
        };
        let (program, args): (PathBuf, Vec<String>) = match self.language {
            Language::JavaScript => {
                let node = find_in_path("node", path)
                    .or_else(|| find_in_path("nodejs", path))
                    .ok_or_else(|| missing("node"))?;
                let driver = dir.join("node_kernel.js").to_string_lossy().into_owned();
                (node, vec!["--expose-internals".into(), driver])
            }
            _ => {
                let python = find_in_path("python3", path).ok_or_else(|| missing("python3"))?;
                // Imported rather than run as a script, so its bytecode is cached in the
                // driver directory: a restart or a new context skips compiling the driver.
                let dir = dir
                    .to_string_lossy()
                    .replace('\\', "\\\\")
                    .replace('\'', "\\'");
                let boot = format!("import sys; sys.path.insert(0, '{dir}'); import python_kernel");
                (python, vec!["-c".into(), boot])
            }
        };
        std::fs::create_dir_all(&cwd).map_err(|source| KernelError::Workdir {
            path: cwd.clone(),
            source,
        })?;
        KernelProc::start(
            self.language.name(),
            &program,
            &args,
            env,
            cwd,
            READY_TIMEOUT,
        )
        .await
    }

    /// Runs one cell (after the cells queued before it).
    pub(super) async fn run(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        cell: Cell<'_>,
        sink: Option<EventSink>,
        cancel: CancellationToken,
    ) -> Result<Outcome, KernelError> {
        let Cell {
            code,
            env,
            workdir,
            timeout,
            session_state,
        } = cell;
        let mut slot = tokio::select! {
            slot = self.slot.lock() => slot,
            _ = cancel.cancelled() => return Err(KernelError::Cancelled),
        };
        if self.deleted.load(Ordering::SeqCst) {
            return Err(KernelError::ContextNotFound(self.id.clone()));
        }
        let env = kernel_env(self.language, env);
        let mut col = Collector::new(Outcome::new(self.language, Some(self.id.clone())), sink);

        // A kernel that died since the last cell (a background thread hit the memory limit,
        // say) took its state with it: say so.
        let mut died_between = None;
        if let Some(k) = slot.as_mut() {
            if k.has_exited() {
                died_between = k.child.try_wait().ok().flatten();
                self.set_kernel(&mut slot, None);
            }
        }
        if slot.is_none() {
            let kernel = self.start(inner, env.clone(), workdir.clone()).await?;
            self.set_kernel(&mut slot, Some(kernel));
        }
        let Some(kernel) = slot.as_mut() else {
            return Err(KernelError::ContextNotFound(self.id.clone()));
        };
        if let Some(status) = died_between {
            col.outcome.kernel_restarted = true;
            let msg = format!(
                "The {} kernel had exited since the last call ({status}); a new kernel was \
                 started and the earlier state (variables, imports) is gone.",
                self.language.name()
            );
            col.note(&msg).await;
            col.outcome.message = Some(msg);
        }

        self.busy.store(true, Ordering::SeqCst);
        self.executions.fetch_add(1, Ordering::Relaxed);
        let command = json!({
            "type": "execute",
            "code": code,
            "env": (env != kernel.env_sent).then(|| {
                env.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect::<serde_json::Map<String, serde_json::Value>>()
            }),
            "cwd": (workdir != kernel.cwd_sent).then_some(workdir.as_str()),
            "clear_cache": self.clear_compiled.swap(false, Ordering::SeqCst),
            "session": session_state.map(|p| json!({"path": p})),
        });
        let (stray, _) = kernel.begin_cell();
        for msg in stray {
            col.push(msg).await;
        }
        let started = Instant::now();
        let (end, why) = match kernel.send(&command).await {
            Ok(()) => {
                kernel.env_sent = env;
                kernel.cwd_sent = workdir;
                drive(kernel, timeout, &cancel, &mut col).await
            }
            Err(_) => {
                // The command pipe is closed: the kernel is gone or going.
                signal_group(kernel.pid, Signal::SIGKILL);
                let status = tokio::time::timeout(Duration::from_secs(2), kernel.child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                (End::Died(status), None)
            }
        };
        col.outcome.duration = started.elapsed();
        let lang = self.language.name();
        let mut restart = false;
        match end {
            End::Done(done) => {
                self.compiled.store(done.compiled, Ordering::SeqCst);
                col.outcome.compile_hit = done.compile_hit;
                col.outcome.execution_count = Some(done.execution_count);
                col.outcome.exit_code = done.exit_code;
                if let (Some(why), "interrupted") = (why, done.status.as_str()) {
                    col.outcome.exit_code = 124;
                    col.outcome.status = match why {
                        Why::Timeout => RunStatus::TimedOut,
                        Why::Cancel => RunStatus::Cancelled,
                    };
                    let msg = match why {
                        Why::Timeout => format!(
                            "Execution timed out after {} and was interrupted; the kernel and \
                             its state were kept.",
                            secs(timeout)
                        ),
                        Why::Cancel => {
                            "The client went away; the execution was interrupted.".to_string()
                        }
                    };
                    col.note(&msg).await;
                    col.outcome.message = Some(msg);
                }
            }
            End::Killed => {
                restart = true;
                col.outcome.kernel_restarted = true;
                col.outcome.exit_code = 124;
                col.outcome.status = if why == Some(Why::Cancel) {
                    RunStatus::Cancelled
                } else {
                    RunStatus::TimedOut
                };
                let what = match why {
                    Some(Why::Cancel) => "The client went away".to_string(),
                    _ => format!("Execution timed out after {}", secs(timeout)),
                };
                let msg = format!(
                    "{what} and the code did not stop within {} of an interrupt; the {lang} \
                     kernel was killed and restarted, so all its state (variables, imports, \
                     functions) was lost.",
                    secs(INTERRUPT_GRACE)
                );
                col.note(&msg).await;
                col.outcome.message = Some(msg);
            }
            End::Died(status) => {
                restart = true;
                col.outcome.kernel_restarted = true;
                col.outcome.status = RunStatus::KernelDied;
                col.outcome.exit_code = status.map_or(137, exit_code);
                let killed = status.is_some_and(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal() == Some(libc::SIGKILL)
                });
                // Where the sandbox can read its memory cgroup, a risen OOM-kill counter proves
                // it; otherwise SIGKILL is the memory limit's signature (nothing else in the
                // sandbox uses it on a kernel unless the user does).
                let verified = match (kernel.oom_kills_at_start, oom_kills()) {
                    (Some(before), Some(now)) => Some(now > before),
                    _ => None,
                };
                let msg = if self.deleted.load(Ordering::SeqCst) {
                    "The context was deleted while this code ran.".to_string()
                } else if self.restarting.load(Ordering::SeqCst) {
                    restart = false;
                    format!(
                        "The context was restarted while this code ran; the {lang} kernel's \
                         state was lost."
                    )
                } else if killed && verified != Some(false) {
                    let how = if verified == Some(true) {
                        "was killed by the sandbox's memory limit (out of memory)"
                    } else {
                        "was killed (SIGKILL), most likely by the sandbox's memory limit (out of \
                         memory),"
                    };
                    format!(
                        "The {lang} kernel {how} while running this code. A new kernel has been \
                         started; all earlier state (variables, imports, functions) was lost."
                    )
                } else {
                    let how = status.map_or_else(|| "unknown status".into(), |s| s.to_string());
                    format!(
                        "The {lang} kernel died while running this code ({how}). A new kernel \
                         has been started; all earlier state (variables, imports, functions) \
                         was lost."
                    )
                };
                col.note(&msg).await;
                col.outcome.message = Some(msg);
            }
        }
        if restart || matches!(col.outcome.status, RunStatus::KernelDied) {
            self.set_kernel(&mut slot, None);
        }
        self.busy.store(false, Ordering::SeqCst);
        drop(slot);
        if restart && !self.deleted.load(Ordering::SeqCst) {
            tokio::spawn(Context::warm(self.clone(), inner.clone()));
        }
        Ok(col.outcome)
    }
}

/// Waits for the cell's `done`, interrupting it at the deadline (or when the client goes away)
/// and giving up on it [`INTERRUPT_GRACE`] later.
async fn drive(
    kernel: &mut KernelProc,
    timeout: Duration,
    cancel: &CancellationToken,
    col: &mut Collector,
) -> (End, Option<Why>) {
    let mut deadline = Instant::now() + timeout;
    let mut why: Option<Why> = None;
    loop {
        tokio::select! {
            msg = kernel.events.recv() => match msg {
                Some(KernelMsg::Done(done)) => return (End::Done(done), why),
                Some(msg) => col.push(msg).await,
                None => {
                    let status = match tokio::time::timeout(Duration::from_secs(2), kernel.child.wait()).await {
                        Ok(status) => status.ok(),
                        Err(_) => None,
                    };
                    return (End::Died(status), why);
                }
            },
            status = kernel.child.wait() => {
                // Take what was still on its way, briefly: a child process of the kernel may
                // hold the event pipe open forever.
                let until = Instant::now() + Duration::from_millis(200);
                while let Ok(Some(msg)) = tokio::time::timeout_at(until, kernel.events.recv()).await {
                    col.push(msg).await;
                }
                return (End::Died(status.ok()), why);
            }
            _ = tokio::time::sleep_until(deadline) => {
                if why.is_some() {
                    return (End::Killed, why);
                }
                why = Some(Why::Timeout);
                signal_group(kernel.pid, Signal::SIGINT);
                deadline = Instant::now() + INTERRUPT_GRACE;
            }
            _ = cancel.cancelled(), if why.is_none() => {
                why = Some(Why::Cancel);
                signal_group(kernel.pid, Signal::SIGINT);
                deadline = Instant::now() + INTERRUPT_GRACE;
            }
        }
    }
}

/// The kernel's environment: the request's plus what the kernel needs (set only when the user
/// has not set it).
fn kernel_env(language: Language, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    if language == Language::Python && !env.iter().any(|(k, _)| k == "MPLBACKEND") {
        // Figures render off-screen; the kernel captures them as PNG.
        env.push(("MPLBACKEND".into(), "Agg".into()));
    }
    env
}

/// "2 s", "0.5 s".
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", s as u64)
    } else {
        format!("{s:.1} s")
    }
}
