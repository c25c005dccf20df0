//! Languages without a kernel: Bash runs per call with the sandbox's environment and working
//! directory; Go compiles the program (once per source hash: the Go compilation cache) and runs
//! the binary. Output is streamed as it is produced.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::collect::Collector;
use super::utf8::Utf8Decoder;
use super::{code_digest, EventSink, KernelError, Language, Outcome, RunStatus};
use crate::process::lang::{find_in_path, random_hex, LangError};
use crate::process::{command, exit_code, kill_group, CommandSpec};
use crate::state::AgentState;

/// How long output may keep arriving after the process exited (a background job may hold the
/// pipe open forever).
const DRAIN: Duration = Duration::from_millis(100);

/// Where Go sources, binaries and the build cache live inside the sandbox.
const GO_DIR: &str = "/tmp/.hutch-go";

/// One per-call run.
pub(super) struct Run<'a> {
    pub language: Language,
    pub code: &'a str,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub timeout: Duration,
}

/// Go programs built in this sandbox, by source hash.
pub(super) struct GoBuilds {
    dir: PathBuf,
    built: Mutex<HashSet<String>>,
}

impl GoBuilds {
    pub(super) fn new() -> Self {
        Self {
            dir: PathBuf::from(GO_DIR),
            built: Mutex::new(HashSet::new()),
        }
    }

    fn built(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn len(&self) -> u64 {
        self.built().len() as u64
    }

    /// Forgets and deletes every built program; returns how many there were.
    pub(super) fn clear(&self) -> u64 {
        let n = {
            let mut built = self.built();
            let n = built.len() as u64;
            built.clear();
            n
        };
        let _ = std::fs::remove_dir_all(self.dir.join("bin"));
        let _ = std::fs::remove_dir_all(self.dir.join("src"));
        n
    }
}

/// Why a process was stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancel,
}

struct ProcEnd {
    status: Option<ExitStatus>,
    stop: Option<Stop>,
}

pub(super) async fn run(
    state: &AgentState,
    go: &GoBuilds,
    run: Run<'_>,
    sink: Option<EventSink>,
    cancel: CancellationToken,
) -> Result<Outcome, KernelError> {
    let mut col = Collector::new(Outcome::new(run.language, None), sink);
    let started = Instant::now();
    let deadline = started + run.timeout;
    let path = run
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str())
        .to_string();
    let end = match run.language {
        Language::Go => {
            let Some(go_bin) = find_in_path("go", &path) else {
                return Err(LangError::MissingRuntime {
                    language: "go",
                    program: "go",
                }
                .into());
            };
            match build_go(state, go, &go_bin, &run, deadline, &cancel, &mut col).await? {
                Ok(bin) => {
                    let argv = vec![bin.to_string_lossy().into_owned()];
                    exec(
                        state,
                        argv,
                        run.env,
                        run.workdir,
                        deadline,
                        &cancel,
                        &mut col,
                    )
                    .await?
                }
                Err(end) => end,
            }
        }
        _ => {
            if find_in_path("bash", &path).is_none() {
                return Err(LangError::MissingRuntime {
                    language: "bash",
                    program: "bash",
                }
                .into());
            }
            let argv = vec!["bash".into(), "-c".into(), run.code.to_string()];
            exec(
                state,
                argv,
                run.env,
                run.workdir,
                deadline,
                &cancel,
                &mut col,
            )
            .await?
        }
    };
    col.outcome.duration = started.elapsed();
    match end.stop {
        Some(stop) => {
            col.outcome.exit_code = 124;
            col.outcome.status = match stop {
                Stop::Timeout => RunStatus::TimedOut,
                Stop::Cancel => RunStatus::Cancelled,
            };
            let msg = match stop {
                Stop::Timeout => format!(
                    "Execution timed out after {} s; the process and its children were killed.",
                    run.timeout.as_secs_f64()
                ),
                Stop::Cancel => "The client went away; the process was killed.".to_string(),
            };
            col.note(&msg).await;
            col.outcome.message = Some(msg);
        }
        None => col.outcome.exit_code = end.status.map_or(-1, exit_code),
    }
    Ok(col.outcome)
}

/// Compiles the program unless a binary for the same source exists. `Ok(Err(end))` when the
/// build itself failed (its output is already in `col`).
async fn build_go(
    state: &AgentState,
    go: &GoBuilds,
    go_bin: &std::path::Path,
    run: &Run<'_>,
    deadline: Instant,
    cancel: &CancellationToken,
    col: &mut Collector,
) -> Result<Result<PathBuf, ProcEnd>, KernelError> {
    // A snippet without a package clause becomes package main, on the same line so compiler
    // messages keep the user's line numbers.
    let source = if has_package_clause(run.code) {
        run.code.to_string()
    } else {
        format!("package main; {}", run.code)
    };
    let hash = code_digest(&source);
    let bin = go.dir.join("bin").join(&hash);
    if bin.is_file() {
        go.built().insert(hash);
        col.outcome.compile_hit = true;
        return Ok(Ok(bin));
    }
    let src_dir = go.dir.join("src").join(&hash);
    let setup = |e: std::io::Error| KernelError::Setup(format!("go build directory: {e}"));
    std::fs::create_dir_all(&src_dir).map_err(setup)?;
    std::fs::create_dir_all(go.dir.join("bin")).map_err(setup)?;
    std::fs::write(src_dir.join("main.go"), &source).map_err(setup)?;
    let tmp = go
        .dir
        .join("bin")
        .join(format!(".{hash}.{}", random_hex(4)));
    let mut env = run.env.clone();
    let set_default = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        if !env.iter().any(|(name, _)| name == k) {
            env.push((k.to_string(), v));
        }
    };
    set_default(&mut env, "GOCACHE", format!("{GO_DIR}/cache"));
    set_default(&mut env, "GOPATH", format!("{GO_DIR}/gopath"));
    set_default(&mut env, "GOTOOLCHAIN", "local".into());
    let argv = vec![
        go_bin.to_string_lossy().into_owned(),
        "build".into(),
        "-o".into(),
        tmp.to_string_lossy().into_owned(),
        "main.go".into(),
    ];
    let workdir = src_dir.to_string_lossy().into_owned();
    let end = exec(state, argv, env, workdir, deadline, cancel, col).await?;
    if end.stop.is_some() || !end.status.is_some_and(|s| s.success()) {
        let _ = std::fs::remove_file(&tmp);
        return Ok(Err(end));
    }
    std::fs::rename(&tmp, &bin).map_err(setup)?;
    go.built().insert(hash);
    Ok(Ok(bin))
}

fn has_package_clause(code: &str) -> bool {
    code.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix("package")
            .is_some_and(|rest| rest.starts_with(char::is_whitespace))
    })
}

/// Runs `argv` to completion or the deadline, streaming its output into `col`.
async fn exec(
    state: &AgentState,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: String,
    deadline: Instant,
    cancel: &CancellationToken,
    col: &mut Collector,
) -> Result<ProcEnd, KernelError> {
    let program = argv.first().cloned().unwrap_or_default();
    let spec = CommandSpec {
        argv,
        env,
        workdir: workdir.clone(),
    };
    let mut cmd = command(state, &spec).map_err(|e| KernelError::Workdir {
        path: workdir,
        source: std::io::Error::other(e.message),
    })?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|source| KernelError::Spawn { program, source })?;
    let pid = child.id().unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<(bool, Vec<u8>)>(64);
    let readers = [
        child
            .stdout
            .take()
            .map(|r| tokio::spawn(pump(r, false, tx.clone()))),
        child
            .stderr
            .take()
            .map(|r| tokio::spawn(pump(r, true, tx.clone()))),
    ];
    drop(tx);
    let mut out = Utf8Decoder::default();
    let mut err = Utf8Decoder::default();
    let mut stop = None;
    let status = loop {
        tokio::select! {
            Some((is_err, bytes)) = rx.recv() => {
                if is_err {
                    col.stderr(err.push(&bytes)).await;
                } else {
                    col.stdout(out.push(&bytes)).await;
                }
            }
            status = child.wait() => break status.ok(),
            _ = tokio::time::sleep_until(deadline), if stop.is_none() => {
                stop = Some(Stop::Timeout);
                kill_group(pid);
            }
            _ = cancel.cancelled(), if stop.is_none() => {
                stop = Some(Stop::Cancel);
                kill_group(pid);
            }
        }
    };
    let until = Instant::now() + DRAIN;
    while let Ok(Some((is_err, bytes))) = tokio::time::timeout_at(until, rx.recv()).await {
        if is_err {
            col.stderr(err.push(&bytes)).await;
        } else {
            col.stdout(out.push(&bytes)).await;
        }
    }
    for reader in readers.into_iter().flatten() {
        reader.abort();
    }
    let (tail_out, tail_err) = (out.finish(), err.finish());
    if !tail_out.is_empty() {
        col.stdout(tail_out).await;
    }
    if !tail_err.is_empty() {
        col.stderr(tail_err).await;
    }
    Ok(ProcEnd { status, stop })
}

async fn pump<R>(mut reader: R, is_err: bool, tx: mpsc::Sender<(bool, Vec<u8>)>)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((is_err, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_clause() {
        assert!(has_package_clause("// x\npackage main\nfunc main(){}"));
        assert!(!has_package_clause("fmt.Println(1)"));
        assert!(!has_package_clause("packages := 1"));
    }
}
