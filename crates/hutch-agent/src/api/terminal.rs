//! `GET /terminal`: an interactive shell on a PTY over a WebSocket (`spec` §10.2).
//!
//! Client → agent: `{"type":"input","data":"…"}` (binary frames are raw input too) and
//! `{"type":"resize","cols":N,"rows":N}`. Agent → client: `{"type":"output","data":"…"}` with
//! the terminal's bytes as text (ANSI sequences included), then `{"type":"exit","code":N}` and a
//! close when the shell ends.
//!
//! The shell is `bash -i` in the sandbox's working directory with the sandbox environment (not
//! `-l`: a login shell's `/etc/profile` would reset `PATH` and drop variables set through `/env`).
//! It leads its own session on the PTY, so when the terminal ends — shell exit or client gone —
//! every process of that session is killed, including jobs bash put in their own groups.
//! The socket is read all the time, so the client's pings are answered while output streams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::State;
use crate::process::procfs;
use crate::process::pty::{make_controlling_terminal, PtyMaster, Utf8Decoder};
use crate::process::{command, exit_code, kill_group, CommandSpec};

/// Bytes read from the PTY per output frame. JSON escaping can grow control bytes six-fold,
/// so a frame stays far below the SDK's 1 MiB message limit.
const CHUNK: usize = 16 * 1024;
/// How long output may still arrive after the shell exited.
const DRAIN: Duration = Duration::from_secs(1);
/// Size of a new terminal.
const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// Input accepted but not yet written to the terminal (a program that does not read its input
/// while the user pastes). Beyond it input is dropped rather than stalling the socket loop,
/// which must keep answering pings and noticing a close.
const MAX_PENDING_INPUT: usize = 1024 * 1024;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// An interactive shell over a WebSocket.
///
/// A WebSocket (`GET` with `Upgrade: websocket`) to `bash -i` on a PTY (80×24 to start), in the
/// sandbox's working directory and environment. Protocol, JSON text frames:
///
/// * client → agent: `{"type": "input", "data": "…"}` (binary frames are raw input too),
///   `{"type": "resize", "cols": N, "rows": N}`, `{"type": "ping"}`; other messages are ignored.
/// * agent → client: `{"type": "output", "data": "…"}` with the terminal's bytes as text (ANSI
///   sequences included), `{"type": "pong"}`, and when the shell ends `{"type": "exit", "code":
///   N}` then a close. A shell that cannot start gives
///   `{"type": "error", "error", "code": "TERMINAL_FAILED"}` and an exit with code -1.
///
/// Closing the socket kills the shell and every process of its session.
#[utoipa::path(get, path = "/terminal", tag = "terminal", operation_id = "terminal",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol described above"),
        (status = 400, description = "Not a WebSocket handshake"),
        (status = 426, description = "The connection cannot be upgraded"),
    ),
    security(("bearer" = [])))]
async fn upgrade(Extract(state): Extract<State>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(socket, state))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Input {
        #[serde(default)]
        data: String,
    },
    Resize {
        cols: u32,
        rows: u32,
    },
    Ping,
}

/// Why the session loop ended.
enum End {
    /// The shell exited with this code.
    Exited(i32),
    /// The client closed or the socket failed.
    ClientGone,
}

fn output(data: String) -> Message {
    Message::Text(json!({"type": "output", "data": data}).to_string().into())
}

async fn session(socket: WebSocket, state: State) {
    let (mut sink, mut stream) = socket.split();
    let (pty, mut child) = match spawn_shell(&state) {
        Ok(v) => v,
        Err(message) => {
            tracing::warn!("terminal: {message}");
            let frame = json!({"type": "error", "error": message, "code": "TERMINAL_FAILED"});
            let _ = sink.send(Message::Text(frame.to_string().into())).await;
            let _ = sink
                .send(Message::Text(
                    json!({"type": "exit", "code": -1}).to_string().into(),
                ))
                .await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    let pty = Arc::new(pty);

    // PTY → frames. Bounded, so a slow client slows the programs instead of growing memory.
    let (out_tx, mut out_rx) = mpsc::channel::<String>(8);
    let reader = tokio::spawn(read_pty(pty.clone(), out_tx));
    // Input → PTY, in its own task so a full input queue never stops the socket loop.
    let input = Input::default();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_pty(pty.clone(), in_rx, input.pending.clone()));
    // Set once nobody holds the slave any more; the shell's exit follows.
    let mut output_done = false;

    let end = loop {
        tokio::select! {
            chunk = out_rx.recv(), if !output_done => match chunk {
                Some(data) => {
                    if sink.send(output(data)).await.is_err() {
                        break End::ClientGone;
                    }
                }
                None => output_done = true,
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(ClientMessage::Input { data }) => input.send(&in_tx, data.into_bytes()),
                        Ok(ClientMessage::Resize { cols, rows }) => {
                            let clamp = |v: u32| v.clamp(1, 1000) as u16;
                            if let Err(e) = pty.resize(clamp(cols), clamp(rows)) {
                                tracing::debug!("terminal resize: {e}");
                            }
                        }
                        Ok(ClientMessage::Ping) => {
                            let pong = json!({"type": "pong"}).to_string();
                            if sink.send(Message::Text(pong.into())).await.is_err() {
                                break End::ClientGone;
                            }
                        }
                        // Unknown types and malformed JSON are ignored, as the SDK does.
                        Err(_) => {}
                    }
                }
                Some(Ok(Message::Binary(bytes))) => input.send(&in_tx, bytes.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break End::ClientGone,
            },
            status = child.wait() => match status {
                Ok(status) => break End::Exited(exit_code(status)),
                Err(_) => break End::Exited(-1),
            },
        }
    };
    drop(in_tx);
    writer.abort();

    match end {
        End::ClientGone => {
            kill_terminal(pid);
            // Completes the closing handshake if the client started it (no-op on a dead socket).
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            reader.abort();
        }
        End::Exited(code) => {
            // Whatever the shell left behind belongs to the terminal and goes with it; that also
            // closes the last slave descriptors, which ends the reader.
            kill_terminal(pid);
            let deadline = tokio::time::Instant::now() + DRAIN;
            while let Ok(Some(data)) = tokio::time::timeout_at(deadline, out_rx.recv()).await {
                if sink.send(output(data)).await.is_err() {
                    break;
                }
            }
            reader.abort();
            let exit = json!({"type": "exit", "code": code}).to_string();
            let _ = sink.send(Message::Text(exit.into())).await;
            let _ = sink.send(Message::Close(None)).await;
        }
    }
}

/// Kills the shell's process group and every other process of its session.
fn kill_terminal(pid: u32) {
    kill_group(pid);
    if let Ok(sid) = i32::try_from(pid) {
        procfs::kill_session(sid, 5);
    }
}

fn spawn_shell(state: &State) -> Result<(PtyMaster, tokio::process::Child), String> {
    let (cols, rows) = DEFAULT_SIZE;
    let (pty, slave) = PtyMaster::open(cols, rows).map_err(|e| e.to_string())?;
    let mut env = state.environment(None);
    if !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    let spec = CommandSpec {
        argv: vec!["bash".into(), "-i".into()],
        env,
        workdir: state.workdir(None),
    };
    let mut cmd = command(state, &spec).map_err(|e| e.message)?;
    let stdin = slave.try_clone().map_err(|e| e.to_string())?;
    let stdout = slave.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(stdin).stdout(stdout).stderr(slave);
    // After `command()`'s setsid (pre_exec callbacks run in registration order).
    make_controlling_terminal(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the shell: {e}"))?;
    // `cmd` holds the parent's copies of the slave; they must go, or the master never sees EOF.
    drop(cmd);
    Ok((pty, child))
}

async fn read_pty(pty: Arc<PtyMaster>, tx: mpsc::Sender<String>) {
    let mut buf = vec![0u8; CHUNK];
    let mut decoder = Utf8Decoder::default();
    loop {
        match pty.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let text = decoder.push(&buf[..n]);
                if !text.is_empty() && tx.send(text).await.is_err() {
                    return;
                }
            }
        }
    }
    let rest = decoder.finish();
    if !rest.is_empty() {
        let _ = tx.send(rest).await;
    }
}

/// Accounting of input on its way to the terminal.
#[derive(Default)]
struct Input {
    pending: Arc<AtomicUsize>,
}

impl Input {
    fn send(&self, tx: &mpsc::UnboundedSender<Vec<u8>>, data: Vec<u8>) {
        let len = data.len();
        if self.pending.load(Ordering::Relaxed) + len > MAX_PENDING_INPUT {
            tracing::warn!("terminal: the program is not reading its input; dropped {len} bytes");
            return;
        }
        self.pending.fetch_add(len, Ordering::Relaxed);
        if tx.send(data).is_err() {
            self.pending.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

async fn write_pty(
    pty: Arc<PtyMaster>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<AtomicUsize>,
) {
    while let Some(data) = rx.recv().await {
        let result = pty.write_all(&data).await;
        pending.fetch_sub(data.len(), Ordering::Relaxed);
        if result.is_err() {
            break;
        }
    }
}
