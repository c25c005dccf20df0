//! One running kernel process and the agent's side of its protocol.
//!
//! Commands go down fd 3 as `u32 LE length + JSON`. Events come back on fd 4 as `u32 LE length +
//! kind byte + payload`: `o` stdout bytes, `e` stderr bytes, `j` a JSON message (`ready`,
//! `display`, `result`, `error`, `done`). Output text is passed through without JSON encoding.
//!
//! A reader task decodes events as they arrive. While a cell runs they go to the cell through a
//! bounded channel (back-pressure reaches the kernel through the pipe). Between cells, output of
//! work the user left running (threads, child processes) is kept, capped, and shown at the start
//! of the next cell, so a chatty background server can never block on a full pipe.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::spawn::{signal_group, spawn_kernel};
use super::utf8::Utf8Decoder;
use super::{Exception, OutputKind, RichOutput};

/// Largest event frame accepted; bigger means a confused kernel.
const MAX_FRAME: usize = 256 << 20;
/// Output of background work kept between cells.
const MAX_STRAY: usize = 64 << 10;

/// A decoded event.
#[derive(Debug)]
pub(super) enum KernelMsg {
    Stdout(String),
    Stderr(String),
    Ready {
        version: String,
    },
    Output(RichOutput),
    Error(Exception),
    /// A session's state was restored into this kernel (`op: restore`) or saved after the
    /// cell (`op: persist`): the names and what was dropped.
    Session {
        op: String,
        report: Value,
    },
    Done(Done),
}

/// End of a cell, as the kernel reports it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Done {
    /// `ok`, `error`, `interrupted` or `exit` (SystemExit).
    pub status: String,
    pub exit_code: i32,
    pub execution_count: u64,
    /// Entries in the kernel's compilation cache.
    pub compiled: u64,
    pub compile_hit: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire {
    Ready {
        #[serde(default)]
        version: String,
    },
    Display {
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Option<Value>,
    },
    Result {
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Option<Value>,
    },
    Error {
        ename: String,
        evalue: String,
        #[serde(default)]
        traceback: Vec<String>,
    },
    Session {
        op: String,
        #[serde(flatten)]
        report: Map<String, Value>,
    },
    Done(Done),
    #[serde(other)]
    Unknown,
}

/// Where the reader sends events: to the running cell, or into the between-cells buffer.
#[derive(Default)]
struct Route {
    active: bool,
    stray: Vec<KernelMsg>,
    stray_bytes: usize,
    stray_dropped: bool,
}

/// A live kernel.
pub(super) struct KernelProc {
    pub child: Child,
    pub pid: u32,
    commands: pipe::Sender,
    pub events: mpsc::Receiver<KernelMsg>,
    route: Arc<Mutex<Route>>,
    reader: JoinHandle<()>,
    /// The environment the kernel was last given (at start or with a cell).
    pub env_sent: Vec<(String, String)>,
    /// The working directory the kernel was last given.
    pub cwd_sent: String,
    /// Interpreter version, from its `ready` message.
    pub version: String,
    /// The sandbox's OOM-kill counter when the kernel started, to tell a memory kill apart.
    pub oom_kills_at_start: Option<u64>,
    /// From spawn to the kernel's `ready`.
    pub startup: Duration,
}

impl Drop for KernelProc {
    fn drop(&mut self) {
        // Everything the kernel started (servers, pools) lives in its process group.
        signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
        self.reader.abort();
    }
}

fn lock_route(r: &Mutex<Route>) -> std::sync::MutexGuard<'_, Route> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

impl KernelProc {
    /// Starts a kernel and waits until it says it is ready.
    pub(super) async fn start(
        language: &'static str,
        program: &Path,
        args: &[String],
        env: Vec<(String, String)>,
        cwd: String,
        ready_timeout: Duration,
    ) -> Result<Self, super::KernelError> {
        let oom_kills_at_start = oom_kills();
        let begun = std::time::Instant::now();
        let spawned = spawn_kernel(program, args, &env, &cwd)
            .await
            .map_err(|source| super::KernelError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let start_err = |detail: String| super::KernelError::KernelStart { language, detail };
        let commands = pipe::Sender::from_owned_fd(spawned.commands)
            .map_err(|e| start_err(format!("command pipe: {e}")))?;
        let events = pipe::Receiver::from_owned_fd(spawned.events)
            .map_err(|e| start_err(format!("event pipe: {e}")))?;
        let pid = spawned.child.id().unwrap_or(0);
        let route = Arc::new(Mutex::new(Route {
            active: true,
            ..Route::default()
        }));
        let (tx, rx) = mpsc::channel(256);
        let reader = tokio::spawn(read_events(events, tx, route.clone()));
        let mut kernel = Self {
            child: spawned.child,
            pid,
            commands,
            events: rx,
            route,
            reader,
            env_sent: env,
            cwd_sent: cwd,
            version: String::new(),
            oom_kills_at_start,
            startup: Duration::ZERO,
        };
        let mut log = String::new();
        let wait_ready = async {
            while let Some(msg) = kernel.events.recv().await {
                match msg {
                    KernelMsg::Ready { version } => return Some(version),
                    KernelMsg::Stdout(s) | KernelMsg::Stderr(s) => log.push_str(&s),
                    _ => {}
                }
            }
            None
        };
        match tokio::time::timeout(ready_timeout, wait_ready).await {
            Ok(Some(version)) => {
                kernel.version = version;
                kernel.startup = begun.elapsed();
                tracing::debug!(language, pid, startup = ?kernel.startup, "kernel ready");
                Ok(kernel)
            }
            Ok(None) => {
                let status = tokio::time::timeout(Duration::from_secs(2), kernel.child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                Err(start_err(format!(
                    "it exited during start-up{status}: {}",
                    log.trim()
                )))
            }
            Err(_) => Err(start_err(format!(
                "not ready after {} s: {}",
                ready_timeout.as_secs(),
                log.trim()
            ))),
        }
    }

    /// Marks the next events as the new cell's and returns the output that background work
    /// produced since the last cell.
    pub(super) fn begin_cell(&self) -> (Vec<KernelMsg>, bool) {
        let mut r = lock_route(&self.route);
        r.active = true;
        r.stray_bytes = 0;
        let dropped = std::mem::take(&mut r.stray_dropped);
        (std::mem::take(&mut r.stray), dropped)
    }

    /// Sends one command.
    pub(super) async fn send(&mut self, msg: &Value) -> io::Result<()> {
        let body = serde_json::to_vec(msg)?;
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "command too large"))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        self.commands.write_all(&frame).await
    }

    /// The process has exited (without waiting).
    pub(super) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// Decodes events until the pipe closes.
async fn read_events(
    events: pipe::Receiver,
    tx: mpsc::Sender<KernelMsg>,
    route: Arc<Mutex<Route>>,
) {
    let mut reader = BufReader::with_capacity(64 << 10, events);
    let mut out = Utf8Decoder::default();
    let mut err = Utf8Decoder::default();
    let mut buf = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if reader.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len == 0 || len > MAX_FRAME {
            tracing::warn!(len, "kernel sent a bad frame; closing its event pipe");
            break;
        }
        buf.resize(len, 0);
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let payload = &buf[1..];
        let msg = match buf[0] {
            b'o' => KernelMsg::Stdout(out.push(payload)),
            b'e' => KernelMsg::Stderr(err.push(payload)),
            b'j' => match serde_json::from_slice::<Wire>(payload) {
                Ok(Wire::Ready { version }) => KernelMsg::Ready { version },
                Ok(Wire::Display { data, metadata }) => KernelMsg::Output(RichOutput {
                    kind: OutputKind::Display,
                    data,
                    metadata,
                }),
                Ok(Wire::Result { data, metadata }) => KernelMsg::Output(RichOutput {
                    kind: OutputKind::Result,
                    data,
                    metadata,
                }),
                Ok(Wire::Error {
                    ename,
                    evalue,
                    traceback,
                }) => KernelMsg::Error(Exception {
                    name: ename,
                    value: evalue,
                    traceback,
                }),
                Ok(Wire::Session { op, report }) => KernelMsg::Session {
                    op,
                    report: Value::Object(report),
                },
                Ok(Wire::Done(d)) => KernelMsg::Done(d),
                Ok(Wire::Unknown) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "kernel sent a message the agent cannot read");
                    continue;
                }
            },
            _ => continue,
        };
        if matches!(&msg, KernelMsg::Stdout(s) | KernelMsg::Stderr(s) if s.is_empty()) {
            continue;
        }
        let to_cell = {
            let mut r = lock_route(&route);
            if r.active {
                if matches!(msg, KernelMsg::Done(_) | KernelMsg::Ready { .. }) {
                    r.active = false;
                }
                Some(msg)
            } else {
                if let KernelMsg::Stdout(s) | KernelMsg::Stderr(s) = &msg {
                    if r.stray_bytes + s.len() <= MAX_STRAY {
                        r.stray_bytes += s.len();
                        r.stray.push(msg);
                    } else {
                        r.stray_dropped = true;
                    }
                }
                None
            }
        };
        if let Some(msg) = to_cell {
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    }
    let tail_out = out.finish();
    let tail_err = err.finish();
    for msg in [KernelMsg::Stdout(tail_out), KernelMsg::Stderr(tail_err)] {
        if matches!(&msg, KernelMsg::Stdout(s) | KernelMsg::Stderr(s) if !s.is_empty()) {
            let _ = tx.send(msg).await;
        }
    }
}

/// The sandbox's cumulative count of processes killed by its memory limit, where the cgroup
/// files are visible inside the sandbox.
pub(super) fn oom_kills() -> Option<u64> {
    const FILES: [&str; 3] = [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
        "/sys/fs/cgroup/memory.events.local",
    ];
    FILES.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
        })
    })
}
