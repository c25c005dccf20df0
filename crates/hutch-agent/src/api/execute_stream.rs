//! `GET /execute/stream` (`spec` §10.1): the client sends one
//! `{"type":"execute","code":…,"language":…,"timeout":…,"workdir":…,"env":…}`; the agent sends
//! `stdout`/`stderr` frames in the order the output was produced, `display` frames for rich
//! output, then `result`, an `error` frame when the run failed, and `complete` (the SDK stops
//! reading there). A client that closes the socket interrupts the run.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::super::State;
use super::{kernel_error, ExecuteBody};
use crate::kernels::{Event, Outcome, RunStatus};

/// `timeout` when the message gives none (the SDK's default for `run_code_stream`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client has to send its execute message.
const FIRST_MESSAGE: Duration = Duration::from_secs(30);
/// Text per output frame: far below the SDK's 1 MiB message limit even after JSON escaping.
const CHUNK: usize = 128 << 10;
/// Largest `display` frame sent; bigger outputs are only in the final `result` frame's
/// `outputs_omitted` count.
const MAX_FRAME: usize = 900 << 10;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Run code with output streamed over a WebSocket.
///
/// A WebSocket (`GET` with `Upgrade: websocket`). Protocol, JSON text frames:
///
/// * client → agent, once: `{"type": "execute", "code": …, "language"?, "timeout"? (seconds,
///   default 60), "workdir"?, "env"?, "context_id"?}` — the fields of `POST /execute`; it must
///   come within 30 s.
/// * agent → client, as output appears: `{"type": "stdout" | "stderr", "data": "…"}` (at most
///   128 KiB of text each, in the order the program wrote it) and
///   `{"type": "display", "output_type", "data": {MIME type: value}}` for rich output.
/// * then `{"type": "result", "success", "exit_code", "execution_time", "execution_id",
///   "context_id", "execution_count", "result", "kernel_restarted", "cache_hit", "status",
///   "outputs_omitted"?}`, an `{"type": "error", "error", "message", "code", "name"?, "value"?,
///   "traceback"?}` frame if the run failed (`EXECUTION_TIMEOUT`, `KERNEL_DIED`,
///   `EXECUTION_FAILED`, or a request error such as `INVALID_REQUEST`), and last
///   `{"type": "complete", "success", "exit_code"?, "execution_time"?}`, then a close.
///
/// Every agent frame carries a `timestamp`. Closing the socket interrupts the run.
#[utoipa::path(get, path = "/execute/stream", tag = "execute", operation_id = "execute_stream",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol described above"),
        (status = 400, description = "Not a WebSocket handshake"),
        (status = 426, description = "The connection cannot be upgraded"),
    ),
    security(("bearer" = [])))]
async fn upgrade(Extract(state): Extract<State>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(socket, state))
}

fn frame(mut v: Value) -> Message {
    if let Some(obj) = v.as_object_mut() {
        obj.entry("timestamp")
            .or_insert_with(|| Value::String(hutch_types::now_rfc3339()));
    }
    Message::Text(v.to_string().into())
}

/// Waits for the execute message; `None` if the client left or never sent one.
async fn first_message(socket: &mut WebSocket) -> Option<Result<ExecuteBody, String>> {
    let wait = async {
        while let Some(msg) = socket.recv().await {
            let text = match msg {
                Ok(Message::Text(t)) => t.as_str().to_string(),
                Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(ExecuteBody::parse(text.as_bytes()).map_err(|e| e.message));
        }
        None
    };
    tokio::time::timeout(FIRST_MESSAGE, wait)
        .await
        .ok()
        .flatten()
}

async fn fail(socket: &mut WebSocket, code: &str, message: &str) {
    let _ = socket
        .send(frame(
            json!({"type": "error", "error": message, "message": message, "code": code}),
        ))
        .await;
    let _ = socket
        .send(frame(json!({"type": "complete", "success": false})))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn session(mut socket: WebSocket, state: State) {
    let body = match first_message(&mut socket).await {
        None => return,
        Some(Err(message)) => return fail(&mut socket, "INVALID_REQUEST", &message).await,
        Some(Ok(body)) => body,
    };
    let spec = match body.spec(DEFAULT_TIMEOUT) {
        Ok(spec) => spec,
        Err(e) => return fail(&mut socket, e.code, &e.message).await,
    };
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let cancel = CancellationToken::new();
    let run_cancel = cancel.clone();
    let st = state.clone();
    let task = tokio::spawn(async move {
        let kernels = &st.kernels;
        kernels.execute(&st, spec, Some(tx), run_cancel).await
    });
    let (mut sink, mut incoming) = socket.split();
    let mut client_gone = false;
    let mut omitted = 0usize;
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                if client_gone {
                    continue;
                }
                for msg in event_frames(event, &mut omitted) {
                    if sink.send(msg).await.is_err() {
                        client_gone = true;
                        cancel.cancel();
                        break;
                    }
                }
            }
            msg = incoming.next(), if !client_gone => {
                if matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    client_gone = true;
                    cancel.cancel();
                }
            }
        }
    }
    let result = task.await.unwrap_or_else(|e| {
        Err(crate::kernels::KernelError::Setup(format!(
            "execution task failed: {e}"
        )))
    });
    if client_gone {
        return;
    }
    let frames = match result {
        Ok(outcome) => final_frames(&outcome, omitted),
        Err(e) => {
            let e = kernel_error(e);
            vec![
                frame(
                    json!({"type": "error", "error": e.message, "message": e.message, "code": e.code}),
                ),
                frame(json!({"type": "complete", "success": false})),
            ]
        }
    };
    for msg in frames {
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

/// Output as frames of at most [`CHUNK`] bytes of text each.
fn event_frames(event: Event, omitted: &mut usize) -> Vec<Message> {
    let (kind, text) = match event {
        Event::Stdout(t) => ("stdout", t),
        Event::Stderr(t) => ("stderr", t),
        Event::Output(out) => {
            let v = json!({"type": "display", "output_type": out.kind, "data": out.data});
            let msg = frame(v);
            if msg_len(&msg) > MAX_FRAME {
                *omitted += 1;
                return Vec::new();
            }
            return vec![msg];
        }
    };
    let mut frames = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let cut = crate::kernels::utf8_floor(rest, CHUNK);
        let cut = if cut == 0 { rest.len() } else { cut };
        frames.push(frame(json!({"type": kind, "data": &rest[..cut]})));
        rest = &rest[cut..];
    }
    frames
}

fn msg_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

/// `result`, `error` when it failed, `complete`.
fn final_frames(o: &Outcome, omitted: usize) -> Vec<Message> {
    let mut result = json!({
        "type": "result",
        "success": o.success(),
        "exit_code": o.exit_code,
        "execution_time": o.duration.as_secs_f64(),
        "execution_id": o.execution_id,
        "context_id": o.context_id,
        "execution_count": o.execution_count,
        "result": o.result_text().map(|t| &t[..crate::kernels::utf8_floor(t, CHUNK)]),
        "kernel_restarted": o.kernel_restarted,
        "cache_hit": o.cache_hit,
        "status": o.status,
    });
    if omitted > 0 {
        result["outputs_omitted"] = json!(omitted);
    }
    let mut frames = vec![frame(result)];
    if !o.success() {
        let code = match o.status {
            RunStatus::TimedOut | RunStatus::Cancelled => "EXECUTION_TIMEOUT",
            RunStatus::KernelDied => "KERNEL_DIED",
            RunStatus::Finished => "EXECUTION_FAILED",
        };
        let message = match (&o.exception, &o.message) {
            (Some(e), _) => format!("{}: {}", e.name, e.value),
            (None, Some(m)) => m.clone(),
            (None, None) => format!("exit code {}", o.exit_code),
        };
        let mut error = json!({"type": "error", "error": message, "message": message, "code": code,
                               "kernel_restarted": o.kernel_restarted});
        if let Some(e) = &o.exception {
            error["name"] = json!(e.name);
            error["value"] = json!(e.value);
            error["traceback"] = json!(e.traceback);
        }
        frames.push(frame(error));
    }
    frames.push(frame(json!({
        "type": "complete",
        "success": o.success(),
        "exit_code": o.exit_code,
        "execution_time": o.duration.as_secs_f64(),
    })));
    frames
}
