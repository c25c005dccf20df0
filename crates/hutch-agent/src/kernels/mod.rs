//! Code interpreters: one long-lived kernel per language and context, rich output, caching and
//! execution history.
//!
//! * Python and JavaScript run in kernels ([`context`]): one interpreter process per context that
//!   keeps variables, imports, functions and classes between calls, like notebook cells. The
//!   default Python context is started as soon as the agent starts, so the first `run_code` of a
//!   new sandbox finds it warm.
//! * Bash and Go run per call ([`oneshot`]); Go programs are compiled once per source hash.
//! * Results are served from the [`cache`] only when a request opts in; every execution is
//!   recorded in the [`history`].

mod cache;
mod collect;
mod context;
mod history;
mod oneshot;
mod proc;
pub mod session;
mod spawn;
mod utf8;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hutch_types::AgentBoot;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process::lang::random_hex;
pub use crate::process::lang::Language;
use crate::state::{AgentState, BASE_ENV};

pub use cache::{go_duration, CacheStats};
pub use context::ContextInfo;
pub use history::{HistoryEntry, Stats};
pub(crate) use utf8::floor_boundary as utf8_floor;

use cache::ResultCache;
use context::Context;
use history::History;

/// The Python driver, written into the sandbox at the first kernel start.
const PYTHON_DRIVER: &str = include_str!("python_kernel.py");
/// The Node.js driver.
const NODE_DRIVER: &str = include_str!("node_kernel.js");
/// Where the drivers are written inside the sandbox (next to the agent's other private files).
const DRIVER_DIR: &str = "/var/lib/hutch-agent/kernels";

/// How long an interrupted cell gets to stop before its kernel is killed and restarted.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// Most contexts a sandbox may hold (each is a process).
pub const MAX_CONTEXTS: usize = 64;

/// Why code could not be run. A failing *program* is not an error: it is an [`Outcome`] with
/// `success == false`.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Unknown language or missing toolchain.
    #[error(transparent)]
    Language(#[from] crate::process::lang::LangError),
    /// `context_id` names no context.
    #[error("no context with id {0:?}")]
    ContextNotFound(String),
    /// `context_id` names a context of another language than the request's.
    #[error("context {id} runs {actual}, but the request says {requested}")]
    ContextLanguage {
        /// The context.
        id: String,
        /// The context's language.
        actual: &'static str,
        /// The request's language.
        requested: &'static str,
    },
    /// Contexts exist for Python and JavaScript only.
    #[error("contexts are for python and javascript; {0} code runs in a new process per call")]
    NoContexts(&'static str),
    /// The sandbox holds [`MAX_CONTEXTS`] contexts already.
    #[error("too many contexts (at most {MAX_CONTEXTS} per sandbox); delete one first")]
    TooManyContexts,
    /// The interpreter started but never said it was ready, or died doing so.
    #[error("the {language} kernel did not start: {detail}")]
    KernelStart {
        /// The kernel's language.
        language: &'static str,
        /// What went wrong, with the kernel's own output.
        detail: String,
    },
    /// The working directory cannot be created.
    #[error("working directory {path}: {source}")]
    Workdir {
        /// The directory.
        path: String,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// The agent's own files could not be written.
    #[error("cannot prepare the kernel: {0}")]
    Setup(String),
    /// The client went away before the code started.
    #[error("execution cancelled before it started")]
    Cancelled,
    /// A session request that cannot be served (another language than Python).
    #[error("{0}")]
    Session(String),
}

/// How a run ended, beyond the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The code ran to its end (successfully or with an exception / non-zero exit).
    Finished,
    /// The deadline passed; the code was interrupted or its kernel killed.
    TimedOut,
    /// The client went away and the code was interrupted.
    Cancelled,
    /// The kernel died while running the code (memory limit, `os._exit`, crash).
    KernelDied,
}

/// Whether an output is a `display()` or the value of the final expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// `display(...)`, a matplotlib figure, …
    Display,
    /// The value of the cell's final expression (IPython's `execute_result`).
    Result,
}

/// One rich output: a MIME bundle.
#[derive(Debug, Clone, Serialize)]
pub struct RichOutput {
    /// Display or result.
    #[serde(rename = "type")]
    pub kind: OutputKind,
    /// MIME type → data (`image/png` is base64, `application/json` any JSON value).
    pub data: Map<String, Value>,
    /// Per-MIME metadata, as the object gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// An uncaught exception in kernel code.
#[derive(Debug, Clone, Serialize)]
pub struct Exception {
    /// Its class name, e.g. `ZeroDivisionError`.
    pub name: String,
    /// Its message.
    pub value: String,
    /// The formatted traceback, one line per entry, line numbers pointing into the cell.
    pub traceback: Vec<String>,
}

/// Everything one execution produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Unique id of this execution.
    pub execution_id: String,
    /// The language it ran in.
    pub language: Language,
    /// The context (kernel languages only).
    pub context_id: Option<String>,
    /// Standard output, in order.
    pub stdout: String,
    /// Standard error, in order; for an exception it ends with the traceback.
    pub stderr: String,
    /// 0 on success; 1 for an exception; the program's code; 124 on timeout; 128+N for a signal.
    pub exit_code: i32,
    /// How it ended.
    pub status: RunStatus,
    /// Wall time of the code itself.
    pub duration: Duration,
    /// Rich outputs in the order they were produced.
    pub outputs: Vec<RichOutput>,
    /// The uncaught exception, if any.
    pub exception: Option<Exception>,
    /// The kernel was killed and started again: all its state is gone.
    pub kernel_restarted: bool,
    /// Explanation of a timeout or a restart, for people.
    pub message: Option<String>,
    /// The kernel's execution counter after this cell.
    pub execution_count: Option<u64>,
    /// Served from the result cache.
    pub cache_hit: bool,
    /// Compiled code was reused (kernel compilation cache or a cached Go binary).
    pub compile_hit: bool,
    /// Output beyond the capture limit was dropped.
    pub truncated: bool,
    /// The session whose context ran the code.
    pub session_id: Option<String>,
    /// What was restored into a fresh session kernel before the code ran: `restored`, `dropped`.
    pub session_restored: Option<Value>,
    /// What was saved after the code succeeded: `saved`, `dropped`.
    pub session_persisted: Option<Value>,
    /// Files the execution produced (when asked to capture them).
    pub artifacts: Vec<crate::artifacts::Artifact>,
}

impl Outcome {
    fn new(language: Language, context_id: Option<String>) -> Self {
        Self {
            execution_id: new_execution_id(),
            language,
            context_id,
            stdout: String::new(),
            stderr: String::new(),
            exit_code: 0,
            status: RunStatus::Finished,
            duration: Duration::ZERO,
            outputs: Vec::new(),
            exception: None,
            kernel_restarted: false,
            message: None,
            execution_count: None,
            cache_hit: false,
            compile_hit: false,
            truncated: false,
            session_id: None,
            session_restored: None,
            session_persisted: None,
            artifacts: Vec::new(),
        }
    }

    /// Ran to its end with exit code 0 and no exception.
    pub fn success(&self) -> bool {
        self.status == RunStatus::Finished && self.exit_code == 0 && self.exception.is_none()
    }

    /// The `text/plain` form of the final expression's value.
    pub fn result_text(&self) -> Option<&str> {
        self.outputs
            .iter()
            .rev()
            .find(|o| o.kind == OutputKind::Result)
            .and_then(|o| o.data.get("text/plain"))
            .and_then(Value::as_str)
    }

    /// Outputs richer than plain text (figures, HTML, images, JSON, …).
    pub fn rich_outputs(&self) -> usize {
        self.outputs
            .iter()
            .filter(|o| o.data.keys().any(|k| k != "text/plain"))
            .count()
    }

    /// The last output carrying `mime` (the HopX response has room for one of each).
    pub fn last_of(&self, mime: &str) -> Option<&Value> {
        self.outputs.iter().rev().find_map(|o| o.data.get(mime))
    }
}

/// Something an execution produced, as it happens (for `/execute/stream`).
#[derive(Debug, Clone)]
pub enum Event {
    /// Standard output text.
    Stdout(String),
    /// Standard error text.
    Stderr(String),
    /// A rich output.
    Output(RichOutput),
}

/// Where streamed events go.
pub type EventSink = mpsc::Sender<Event>;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The language.
    pub language: Language,
    /// The code.
    pub code: String,
    /// Per-request variables (layered over the sandbox's own).
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// The requested working directory; `None` means the context's or the sandbox's default.
    pub workdir: Option<String>,
    /// Deadline for the code.
    pub timeout: Duration,
    /// The context to run in (kernel languages); `None` means the language's default context.
    pub context_id: Option<String>,
    /// `Some` when the request opted into the result cache; the string is its `cache_key`.
    pub cache: Option<String>,
    /// The id to report (an async execution's id was handed out before it ran); new if `None`.
    pub execution_id: Option<String>,
    /// Run in this session's context, restoring and persisting its state ([`session`]).
    pub session: Option<String>,
    /// Record the files the execution produced ([`crate::artifacts`]).
    pub capture_artifacts: bool,
}

/// Every kernel, context, cache and history entry of this sandbox.
pub struct Kernels {
    inner: Arc<Inner>,
}

/// The shared part, also held by background tasks (warm-up, restarts).
pub(crate) struct Inner {
    contexts: Mutex<HashMap<String, Arc<Context>>>,
    cache: Mutex<ResultCache>,
    history: Mutex<History>,
    go: oneshot::GoBuilds,
    drivers: OnceLock<Result<PathBuf, String>>,
    boot_env: Vec<(String, String)>,
    boot_workdir: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_execution_id() -> String {
    format!("exec_{}", random_hex(8))
}

/// The id of a language's default context.
pub fn default_context_id(language: Language) -> String {
    format!("default-{}", language.name())
}

impl Kernels {
    /// Creates the registry and, when called inside the agent's runtime, starts the default
    /// Python kernel in the background so the first `run_code` finds it warm.
    pub fn new(boot: &AgentBoot) -> Self {
        let mut env: std::collections::BTreeMap<String, String> = BASE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend(boot.env_vars.clone());
        let inner = Arc::new(Inner {
            contexts: Mutex::new(HashMap::new()),
            cache: Mutex::new(ResultCache::new(
                cache::DEFAULT_MAX_SIZE,
                cache::DEFAULT_TTL,
            )),
            history: Mutex::new(History::new(history::HISTORY_LEN)),
            go: oneshot::GoBuilds::new(),
            drivers: OnceLock::new(),
            boot_env: env.into_iter().collect(),
            boot_workdir: if boot.workdir.is_empty() {
                "/workspace".into()
            } else {
                boot.workdir.clone()
            },
        });
        // Only as the sandbox's agent (a child of the sandbox's PID 1, inside the runtime):
        // a test that builds the state in-process must not start interpreters on the host.
        if tokio::runtime::Handle::try_current().is_ok() && nix::unistd::getppid().as_raw() == 1 {
            let ctx = inner.default_context(Language::Python);
            tokio::spawn(Context::warm(ctx, inner.clone()));
        }
        Self { inner }
    }

    /// Runs code: from the result cache if the request opted in and a fresh result exists, else
    /// in the context's kernel or a new process. Records the execution in the history.
    pub async fn execute(
        &self,
        state: &AgentState,
        spec: ExecSpec,
        sink: Option<EventSink>,
        cancel: CancellationToken,
    ) -> Result<Outcome, KernelError> {
        let inner = &self.inner;
        let env = state.environment(spec.env.as_ref());
        let ctx = match spec.language {
            Language::Python | Language::JavaScript => Some(inner.context_for(&spec)?),
            _ if spec.session.is_some() => {
                return Err(KernelError::Session(format!(
                    "sessions run Python, not {}",
                    spec.language.name()
                )))
            }
            Language::Bash | Language::Go => {
                if spec.context_id.is_some() {
                    return Err(KernelError::NoContexts(spec.language.name()));
                }
                None
            }
        };
        let workdir = match (&spec.workdir, &ctx) {
            (Some(w), _) if !w.trim().is_empty() => w.trim().to_string(),
            (_, Some(c)) if c.cwd.is_some() => c.cwd.clone().unwrap_or_default(),
            _ => state.workdir(None),
        };
        let cache_key = spec.cache.as_ref().map(|k| {
            result_key(
                spec.language,
                ctx.as_ref().map(|c| c.id.as_str()),
                &spec.code,
                &env,
                &workdir,
                k,
            )
        });
        let started = Instant::now();
        if let Some(key) = &cache_key {
            let hit = lock(&inner.cache).get(key);
            if let Some(hit) = hit {
                let mut o = (*hit).clone();
                o.execution_id = spec.execution_id.clone().unwrap_or_else(new_execution_id);
                o.cache_hit = true;
                o.duration = started.elapsed();
                o.session_restored = None;
                o.session_persisted = None;
                o.artifacts.clear();
                if let Some(sink) = &sink {
                    replay(&o, sink).await;
                }
                lock(&inner.history).record(&o, &spec.code);
                return Ok(o);
            }
        }
        let state_file = spec.session.as_deref().map(session::state_path);
        let before = if spec.capture_artifacts {
            let root = std::path::PathBuf::from(&workdir);
            Some(
                tokio::task::spawn_blocking(move || {
                    let snap = crate::artifacts::Artifacts::snapshot(&root);
                    (root, snap)
                })
                .await
                .map_err(|e| KernelError::Setup(format!("workspace scan failed: {e}")))?,
            )
        } else {
            None
        };
        let mut outcome = match ctx {
            Some(ctx) => {
                let run = context::Cell {
                    code: &spec.code,
                    env,
                    workdir,
                    timeout: spec.timeout,
                    session_state: state_file.as_deref(),
                };
                ctx.run(inner, run, sink, cancel).await?
            }
            None => {
                let run = oneshot::Run {
                    language: spec.language,
                    code: &spec.code,
                    env,
                    workdir,
                    timeout: spec.timeout,
                };
                oneshot::run(state, &inner.go, run, sink, cancel).await?
            }
        };
        if let Some(id) = spec.execution_id {
            outcome.execution_id = id;
        }
        outcome.session_id = spec.session.clone();
        if let Some((root, before)) = before {
            let outputs = outcome.outputs.clone();
            let exec_id = outcome.execution_id.clone();
            let arts = state.artifacts.clone();
            outcome.artifacts = tokio::task::spawn_blocking(move || {
                arts.capture(&root, &before, &outputs, &exec_id)
            })
            .await
            .unwrap_or_default();
        }
        if let Some(key) = cache_key {
            if outcome.success() {
                lock(&inner.cache).insert(key, Arc::new(outcome.clone()));
            }
        }
        lock(&inner.history).record(&outcome, &spec.code);
        Ok(outcome)
    }

    /// Creates a context and starts its kernel in the background.
    pub fn create_context(
        &self,
        language: Language,
        cwd: Option<String>,
    ) -> Result<ContextInfo, KernelError> {
        if !matches!(language, Language::Python | Language::JavaScript) {
            return Err(KernelError::NoContexts(language.name()));
        }
        let id = format!("ctx_{}", random_hex(8));
        let ctx = Arc::new(Context::new(id.clone(), language, cwd, false));
        {
            let mut all = lock(&self.inner.contexts);
            if all.len() >= MAX_CONTEXTS {
                return Err(KernelError::TooManyContexts);
            }
            all.insert(id, ctx.clone());
        }
        tokio::spawn(Context::warm(ctx.clone(), self.inner.clone()));
        Ok(ctx.info())
    }

    /// Every context, oldest first.
    pub fn list_contexts(&self) -> Vec<ContextInfo> {
        let mut all: Vec<ContextInfo> = lock(&self.inner.contexts)
            .values()
            .map(|c| c.info())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// One context.
    pub fn context(&self, id: &str) -> Result<ContextInfo, KernelError> {
        self.inner.get_context(id).map(|c| c.info())
    }

    /// Kills the context's kernel (interrupting any running cell, whose caller is told the
    /// kernel restarted) and starts a fresh one; returns once it is ready.
    pub async fn restart_context(&self, id: &str) -> Result<ContextInfo, KernelError> {
        let ctx = self.inner.get_context(id)?;
        ctx.restart(&self.inner).await?;
        Ok(ctx.info())
    }

    /// Forgets a session: its context (killing the kernel) and its saved state (blocking).
    pub fn delete_session(&self, sid: &str) -> std::io::Result<()> {
        if let Some(ctx) = lock(&self.inner.contexts).remove(&session::context_id(sid)) {
            ctx.delete();
        }
        session::delete_state(sid)
    }

    /// Removes a context and kills its kernel.
    pub fn delete_context(&self, id: &str) -> Result<(), KernelError> {
        let ctx = lock(&self.inner.contexts)
            .remove(id)
            .ok_or_else(|| KernelError::ContextNotFound(id.to_string()))?;
        ctx.delete();
        Ok(())
    }

    /// Result-cache counters and compiled-code entries.
    pub fn cache_stats(&self) -> CacheStats {
        let mut stats = lock(&self.inner.cache).stats();
        stats.compiled_entries = self.inner.compiled_entries();
        stats
    }

    /// Empties the result cache (and its counters) and every compilation cache. Returns the
    /// number of results and of compiled entries removed.
    pub fn clear_cache(&self) -> (usize, u64) {
        let results = lock(&self.inner.cache).clear();
        let mut compiled = self.inner.go.clear();
        for ctx in lock(&self.inner.contexts).values() {
            compiled += ctx.clear_compiled();
        }
        (results, compiled)
    }

    /// The newest `limit` executions, newest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        lock(&self.inner.history).recent(limit)
    }

    /// Totals over every execution since the agent started.
    pub fn stats(&self) -> Stats {
        let compiled = self.inner.compiled_entries();
        lock(&self.inner.history).stats(compiled)
    }
}

impl Inner {
    /// The language's default context, created on first use.
    fn default_context(&self, language: Language) -> Arc<Context> {
        let id = default_context_id(language);
        lock(&self.contexts)
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Context::new(id, language, None, true)))
            .clone()
    }

    fn get_context(&self, id: &str) -> Result<Arc<Context>, KernelError> {
        lock(&self.contexts)
            .get(id)
            .cloned()
            .ok_or_else(|| KernelError::ContextNotFound(id.to_string()))
    }

    fn context_for(&self, spec: &ExecSpec) -> Result<Arc<Context>, KernelError> {
        if let Some(sid) = &spec.session {
            if spec.language != Language::Python {
                return Err(KernelError::Session(format!(
                    "sessions run Python, not {}",
                    spec.language.name()
                )));
            }
            let id = session::context_id(sid);
            let mut all = lock(&self.contexts);
            if let Some(ctx) = all.get(&id) {
                return Ok(ctx.clone());
            }
            if all.len() >= MAX_CONTEXTS {
                return Err(KernelError::TooManyContexts);
            }
            let ctx = Arc::new(Context::new(id.clone(), Language::Python, None, false));
            all.insert(id, ctx.clone());
            return Ok(ctx);
        }
        match spec.context_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => {
                let ctx = self.get_context(id)?;
                if ctx.language != spec.language {
                    return Err(KernelError::ContextLanguage {
                        id: id.to_string(),
                        actual: ctx.language.name(),
                        requested: spec.language.name(),
                    });
                }
                Ok(ctx)
            }
            _ => Ok(self.default_context(spec.language)),
        }
    }

    fn compiled_entries(&self) -> u64 {
        let kernels: u64 = lock(&self.contexts)
            .values()
            .map(|c| c.compiled.load(Ordering::Relaxed))
            .sum();
        kernels + self.go.len()
    }

    /// The directory holding the driver programs, written once per agent process.
    fn drivers(&self) -> Result<&PathBuf, KernelError> {
        self.drivers
            .get_or_init(|| write_drivers().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| KernelError::Setup(e.clone()))
    }
}

fn write_drivers() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = PathBuf::from(DRIVER_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    for (name, text) in [
        ("python_kernel.py", PYTHON_DRIVER),
        ("node_kernel.js", NODE_DRIVER),
    ] {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(dir)
}

/// The result-cache key: a hash over everything that can change a deterministic result.
fn result_key(
    language: Language,
    context: Option<&str>,
    code: &str,
    env: &[(String, String)],
    workdir: &str,
    cache_key: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"hutch-result-v1");
    field(language.name().as_bytes());
    field(context.unwrap_or("").as_bytes());
    field(workdir.as_bytes());
    field(cache_key.as_bytes());
    for (k, v) in env {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(code.as_bytes());
    h.finalize().into()
}

/// Sends a cached outcome to a stream as if it ran now.
async fn replay(o: &Outcome, sink: &EventSink) {
    if !o.stdout.is_empty() {
        let _ = sink.send(Event::Stdout(o.stdout.clone())).await;
    }
    if !o.stderr.is_empty() {
        let _ = sink.send(Event::Stderr(o.stderr.clone())).await;
    }
    for out in &o.outputs {
        let _ = sink.send(Event::Output(out.clone())).await;
    }
}

/// Hex SHA-256 of the code, for the history.
pub(crate) fn code_digest(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_key_depends_on_every_field() {
        let env = vec![("A".to_string(), "1".to_string())];
        let base = result_key(Language::Python, Some("c"), "x", &env, "/w", "");
        assert_eq!(
            base,
            result_key(Language::Python, Some("c"), "x", &env, "/w", "")
        );
        assert_ne!(
            base,
            result_key(Language::JavaScript, Some("c"), "x", &env, "/w", "")
        );
        assert_ne!(
            base,
            result_key(Language::Python, Some("d"), "x", &env, "/w", "")
        );
        assert_ne!(
            base,
            result_key(Language::Python, Some("c"), "y", &env, "/w", "")
        );
        assert_ne!(
            base,
            result_key(Language::Python, Some("c"), "x", &[], "/w", "")
        );
        assert_ne!(
            base,
            result_key(Language::Python, Some("c"), "x", &env, "/v", "")
        );
        assert_ne!(
            base,
            result_key(Language::Python, Some("c"), "x", &env, "/w", "k")
        );
    }
}
