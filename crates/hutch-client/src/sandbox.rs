//! One sandbox's agent API through the server's gateway (`spec/hopx-protocol.md` §7–§10): plain
//! HTTP calls and the WebSockets (`/terminal`, `/execute/stream`), all with the sandbox's bearer
//! token, which is what the gateway routes by.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody as HttpStreamBody};
use hyper::body::Frame;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::io::ReaderStream;

use crate::api::{encode_component, ApiError};
use crate::control::{full_body, ControlClient, ControlError, StreamBody};

/// A failed agent call.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// HTTP call failed or the agent answered an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The WebSocket could not be opened or broke.
    #[error("WebSocket {path}: {source}")]
    WebSocket {
        /// The endpoint.
        path: String,
        /// The cause.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Local file I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<ControlError> for SandboxError {
    fn from(e: ControlError) -> Self {
        SandboxError::Api(ApiError::Transport(e))
    }
}

/// `POST /execute` and the first message of `/execute/stream`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecuteRequest {
    /// The code.
    pub code: String,
    /// `python`, `javascript`, `bash`, `go`, ….
    pub language: String,
    /// Seconds.
    pub timeout: u64,
    /// Working directory (agent default `/workspace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Extra environment for this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// `POST /commands/run`: `command` + `args` run as argv, no shell.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandRequest {
    /// Program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Seconds.
    pub timeout: u64,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Extra environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// What a finished command or execution printed, with how it ended.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunOutput {
    /// Standard output.
    #[serde(default)]
    pub stdout: String,
    /// Standard error.
    #[serde(default)]
    pub stderr: String,
    /// Exit code (124 on a timeout).
    #[serde(default)]
    pub exit_code: i32,
    /// The deadline passed.
    #[serde(default)]
    pub timed_out: bool,
    /// The interpreter was restarted: its state is gone.
    #[serde(default)]
    pub kernel_restarted: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileEntry {
    /// Name in its directory.
    pub name: String,
    /// Full path.
    pub path: String,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
    /// A directory (or a link to one).
    #[serde(default)]
    pub is_directory: bool,
    /// The entry is a symbolic link.
    #[serde(default)]
    pub is_symlink: bool,
    /// Octal mode, e.g. `0644`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// What exists at a path in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing.
    Missing,
    /// A file (or anything that is not a directory).
    File,
    /// A directory.
    Directory,
}

/// A client for one sandbox's agent, through the gateway at `base_url` with `token`.
#[derive(Debug, Clone)]
pub struct SandboxClient {
    http: ControlClient,
    auth: String,
}

impl SandboxClient {
    /// A client for the agent reached at `base_url` (the sandbox's `public_host`).
    pub fn new(base_url: &str, token: &str) -> Result<Self, ControlError> {
        Ok(Self {
            http: ControlClient::new(base_url, None)?,
            auth: format!("Bearer {token}"),
        })
    }

    /// Sets the timeout of connecting and of each plain call's reply.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = self.http.with_timeout(timeout);
        self
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), SandboxError> {
        let r = self
            .http
            .send(
                method,
                path,
                body.map(|b| Bytes::from(b.to_string())),
                &[("authorization", &self.auth)],
            )
            .await?;
        if !r.status.is_success() {
            return Err(ApiError::from_reply(r.status, &r.body).into());
        }
        Ok((r.status, r.json()))
    }

    /// Any agent call with an optional JSON body: the reply's JSON (`Null` for an empty body).
    /// A non-2xx reply is an error carrying the agent's message and code.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SandboxError> {
        self.call(method, path, body).await.map(|(_, v)| v)
    }

    /// `POST /execute`: the whole result as the agent sent it. A timeout (408
    /// `EXECUTION_TIMEOUT`) is returned as a result too, from the error's details, so what ran
    /// before the deadline is not lost.
    pub async fn execute(&self, req: &ExecuteRequest) -> Result<Value, SandboxError> {
        let body = json!(req);
        match self.call(Method::POST, "/execute", Some(&body)).await {
            Ok((_, v)) => Ok(v),
            Err(e) => timeout_details(e),
        }
    }

    /// `POST /commands/run`; a timeout comes back as a result with `timed_out`.
    pub async fn run_command(&self, req: &CommandRequest) -> Result<Value, SandboxError> {
        let body = json!(req);
        match self.call(Method::POST, "/commands/run", Some(&body)).await {
            Ok((_, v)) => Ok(v),
            Err(e) => timeout_details(e),
        }
    }

    /// `GET /files/exists`: what is at `path`.
    pub async fn stat(&self, path: &str) -> Result<PathKind, SandboxError> {
        let (_, v) = self
            .call(
                Method::GET,
                &format!("/files/exists?path={}", encode_component(path)),
                None,
            )
            .await?;
        Ok(match (v["exists"].as_bool(), v["is_directory"].as_bool()) {
            (Some(true), Some(true)) => PathKind::Directory,
            (Some(true), _) => PathKind::File,
            _ => PathKind::Missing,
        })
    }

    /// `GET /files/list`: the entries of a directory.
    pub async fn list(&self, path: &str) -> Result<Vec<FileEntry>, SandboxError> {
        let (_, v) = self
            .call(
                Method::GET,
                &format!("/files/list?path={}", encode_component(path)),
                None,
            )
            .await?;
        if v["truncated"].as_bool() == Some(true) {
            return Err(SandboxError::Io {
                what: format!("listing {path}"),
                source: std::io::Error::other("the directory has too many entries to list"),
            });
        }
        serde_json::from_value(v["files"].clone()).map_err(|e| {
            SandboxError::Api(ApiError::Decode {
                what: "GET /files/list".into(),
                detail: e.to_string(),
            })
        })
    }

    /// `POST /files/mkdir` (with parents).
    pub async fn mkdir(&self, path: &str) -> Result<(), SandboxError> {
        self.call(Method::POST, "/files/mkdir", Some(&json!({ "path": path })))
            .await?;
        Ok(())
    }

    /// `POST /files/upload`: streams `len` bytes of `reader` to `remote` (a directory, or a path
    /// ending in `/`, receives the file under `file_name`).
    pub async fn upload(
        &self,
        reader: impl AsyncRead + Send + 'static,
        len: Option<u64>,
        file_name: &str,
        remote: &str,
        mode: Option<u32>,
    ) -> Result<(), SandboxError> {
        let boundary = format!("hutch-{:016x}", rand_u64());
        let mut head = String::new();
        let mut field = |name: &str, value: &str| {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        };
        field("path", remote);
        if let Some(m) = mode {
            field("mode", &format!("{m:o}"));
        }
        let safe_name: String = file_name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let total = len.map(|l| (head.len() as u64 + l + tail.len() as u64).to_string());
        let body: StreamBody = match len {
            Some(l) => multipart(head, ReaderStream::new(reader.take(l)), tail),
            None => multipart(head, ReaderStream::new(reader), tail),
        };
        let mut headers = vec![
            ("authorization", self.auth.as_str()),
            ("content-type", content_type.as_str()),
        ];
        if let Some(t) = &total {
            headers.push(("content-length", t.as_str()));
        }
        let resp = self
            .http
            .open(Method::POST, "/files/upload", body, &headers)
            .await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(ControlError::Http)?
            .to_bytes();
        if !status.is_success() {
            return Err(ApiError::from_reply(status, &bytes).into());
        }
        Ok(())
    }

    /// `GET /files/download`: streams the file at `remote` into `out`; returns its size.
    pub async fn download(
        &self,
        remote: &str,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<u64, SandboxError> {
        let path = format!("/files/download?path={}", encode_component(remote));
        let resp = self
            .http
            .open(
                Method::GET,
                &path,
                full_body(Bytes::new()),
                &[("authorization", &self.auth)],
            )
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(ControlError::Http)?.to_bytes();
            return Err(ApiError::from_reply(status, &bytes).into());
        }
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(ControlError::Http)?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|source| SandboxError::Io {
                        what: format!("writing {remote}"),
                        source,
                    })?;
                n += data.len() as u64;
            }
        }
        out.flush().await.map_err(|source| SandboxError::Io {
            what: format!("writing {remote}"),
            source,
        })?;
        Ok(n)
    }

    /// Opens a WebSocket to the agent endpoint `path` (`/terminal`, `/execute/stream`). The path
    /// of the base URL is dropped, as the SDK does (`spec` §1.2): the token picks the sandbox.
    pub async fn websocket(&self, path: &str) -> Result<Ws, SandboxError> {
        let ws_err = |source| SandboxError::WebSocket {
            path: path.to_string(),
            source: Box::new(source),
        };
        let authority = self.http.authority().to_string();
        let mut req = format!("ws://{authority}{path}")
            .into_client_request()
            .map_err(ws_err)?;
        let auth = HeaderValue::from_str(&self.auth)
            .map_err(|e| ws_err(tokio_tungstenite::tungstenite::Error::HttpFormat(e.into())))?;
        req.headers_mut().insert("authorization", auth);
        let connect = async {
            let stream =
                TcpStream::connect(&authority)
                    .await
                    .map_err(|source| ControlError::Connect {
                        addr: authority.clone(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            match tokio_tungstenite::client_async(req, stream).await {
                Ok((ws, _)) => Ok(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let status = resp.status();
                    let body = resp.into_body().unwrap_or_default();
                    Err(SandboxError::Api(ApiError::from_reply(status, &body)))
                }
                Err(e) => Err(ws_err(e)),
            }
        };
        let timeout = self.http.timeout();
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| SandboxError::from(ControlError::Timeout(timeout)))?
    }

    /// Opens `/terminal`: an interactive shell on a PTY.
    pub async fn terminal(&self) -> Result<(TerminalWriter, TerminalReader), SandboxError> {
        let ws = self.websocket("/terminal").await?;
        let (sink, stream) = ws.split();
        Ok((TerminalWriter { sink }, TerminalReader { stream }))
    }

    /// Opens `/execute/stream` and sends the execute message: the events follow on the reader.
    pub async fn execute_stream(&self, req: &ExecuteRequest) -> Result<ExecStream, SandboxError> {
        let mut ws = self.websocket("/execute/stream").await?;
        let mut msg = json!(req);
        msg["type"] = json!("execute");
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|source| SandboxError::WebSocket {
                path: "/execute/stream".into(),
                source: Box::new(source),
            })?;
        Ok(ExecStream { ws })
    }
}

/// A WebSocket to an agent.
pub type Ws = WebSocketStream<TcpStream>;

fn timeout_details(e: SandboxError) -> Result<Value, SandboxError> {
    match e {
        SandboxError::Api(ApiError::Server {
            status: StatusCode::REQUEST_TIMEOUT,
            ref body,
            ..
        }) => {
            let details = body
                .get("details")
                .filter(|d| d.is_object())
                .or_else(|| body.get("error").and_then(|e| e.get("details")))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let mut v = details;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("timed_out".into(), json!(true));
                obj.entry("exit_code").or_insert(json!(124));
                obj.entry("error")
                    .or_insert(body.get("error").cloned().unwrap_or(Value::Null));
            }
            Ok(v)
        }
        e => Err(e),
    }
}

fn multipart<S>(head: String, file: S, tail: String) -> StreamBody
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ))
        .map_ok(Frame::data);
    BodyExt::boxed_unsync(HttpStreamBody::new(stream))
}

/// A boundary needs to be unlikely to occur in the file, not secret.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// What the terminal sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEvent {
    /// Terminal output (ANSI sequences included).
    Output(String),
    /// The shell ended with this code; the socket closes next.
    Exit(i32),
    /// The socket closed without an exit frame.
    Closed,
}

/// The sending half of a terminal.
pub struct TerminalWriter {
    sink: SplitSink<Ws, Message>,
}

impl TerminalWriter {
    async fn send(&mut self, v: Value) -> Result<(), SandboxError> {
        self.sink
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|source| SandboxError::WebSocket {
                path: "/terminal".into(),
                source: Box::new(source),
            })
    }

    /// Types `data` into the terminal.
    pub async fn input(&mut self, data: &str) -> Result<(), SandboxError> {
        self.send(json!({"type": "input", "data": data})).await
    }

    /// Sets the terminal's size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), SandboxError> {
        self.send(json!({"type": "resize", "cols": cols, "rows": rows}))
            .await
    }

    /// Closes the socket (the agent then ends the shell).
    pub async fn close(&mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.close().await;
    }
}

/// The receiving half of a terminal.
pub struct TerminalReader {
    stream: SplitStream<Ws>,
}

impl TerminalReader {
    /// The next event; frames that are not JSON or of unknown type are skipped.
    pub async fn next(&mut self) -> Result<TerminalEvent, SandboxError> {
        loop {
            let text = match self.stream.next().await {
                None => return Ok(TerminalEvent::Closed),
                Some(Err(e)) => {
                    return match e {
                        tokio_tungstenite::tungstenite::Error::ConnectionClosed
                        | tokio_tungstenite::tungstenite::Error::AlreadyClosed => {
                            Ok(TerminalEvent::Closed)
                        }
                        e => Err(SandboxError::WebSocket {
                            path: "/terminal".into(),
                            source: Box::new(e),
                        }),
                    }
                }
                Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(Message::Close(_))) => return Ok(TerminalEvent::Closed),
                Some(Ok(_)) => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match v["type"].as_str() {
                Some("output") => {
                    if let Some(d) = v["data"].as_str() {
                        return Ok(TerminalEvent::Output(d.to_string()));
                    }
                }
                Some("exit") => {
                    let code = v["code"]
                        .as_i64()
                        .and_then(|c| i32::try_from(c).ok())
                        .unwrap_or(1);
                    return Ok(TerminalEvent::Exit(code));
                }
                _ => {}
            }
        }
    }
}

/// What `/execute/stream` sends, as it happens.
#[derive(Debug, Clone)]
pub enum ExecEvent {
    /// Standard output text.
    Stdout(String),
    /// Standard error text.
    Stderr(String),
    /// A rich output: `output_type` (`display` or `result`) and its MIME bundle.
    Display {
        /// `display` or `result`.
        kind: String,
        /// MIME type → data.
        data: serde_json::Map<String, Value>,
    },
    /// The run ended: the `result` frame as sent.
    Result(Value),
    /// The run failed: the `error` frame as sent.
    Error(Value),
    /// Nothing follows.
    Complete(Value),
}

/// A running `/execute/stream`.
pub struct ExecStream {
    ws: Ws,
}

impl ExecStream {
    /// The next event; `None` once the socket has closed.
    pub async fn next(&mut self) -> Option<Result<ExecEvent, SandboxError>> {
        loop {
            let text = match self.ws.next().await? {
                Err(e) => {
                    return match e {
                        tokio_tungstenite::tungstenite::Error::ConnectionClosed
                        | tokio_tungstenite::tungstenite::Error::AlreadyClosed => None,
                        e => Some(Err(SandboxError::WebSocket {
                            path: "/execute/stream".into(),
                            source: Box::new(e),
                        })),
                    }
                }
                Ok(Message::Text(t)) => t.as_str().to_string(),
                Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let data = || v["data"].as_str().unwrap_or_default().to_string();
            let event = match v["type"].as_str() {
                Some("stdout") => ExecEvent::Stdout(data()),
                Some("stderr") => ExecEvent::Stderr(data()),
                Some("display") => ExecEvent::Display {
                    kind: v["output_type"].as_str().unwrap_or("display").to_string(),
                    data: v["data"].as_object().cloned().unwrap_or_default(),
                },
                Some("result") => ExecEvent::Result(v),
                Some("error") => ExecEvent::Error(v),
                Some("complete") => ExecEvent::Complete(v),
                _ => continue,
            };
            return Some(Ok(event));
        }
    }

    /// Closes the socket: the agent interrupts a run that is still going.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Uploads a local file to `remote` (see [`SandboxClient::upload`]), keeping its mode.
pub async fn upload_file(
    client: &SandboxClient,
    local: &Path,
    remote: &str,
) -> Result<(), SandboxError> {
    let io = |source| SandboxError::Io {
        what: format!("reading {}", local.display()),
        source,
    };
    let file = tokio::fs::File::open(local).await.map_err(io)?;
    let meta = file.metadata().await.map_err(io)?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    };
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    client
        .upload(file, Some(meta.len()), &name, remote, Some(mode))
        .await
}
