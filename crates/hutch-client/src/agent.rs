//! A client for a sandbox agent, over the unix socket the host bound for it.
//!
//! One connection per request: connecting to a unix socket costs tens of microseconds, and it
//! keeps a paused or restarted agent from poisoning a pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

/// A failed agent call.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The socket could not be reached.
    #[error("cannot connect to the agent at {path:?}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed on an open connection.
    #[error("agent request failed")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad agent request")]
    Request(#[from] hyper::http::Error),
    /// No answer in time.
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The agent answered with an error status.
    #[error("agent answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The body text.
        body: String,
    },
    /// The body was not the expected JSON.
    #[error("unexpected agent response")]
    Decode(#[from] serde_json::Error),
}

/// Output of `POST /commands/run`.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub exit_code: i32,
}

/// A client for one sandbox's agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

impl AgentClient {
    /// A client for the agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns status and body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), AgentError> {
        tokio::time::timeout(timeout, self.request_inner(method, path, body))
            .await
            .map_err(|_| AgentError::Timeout(timeout))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), AgentError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| AgentError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "agent");
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = builder.body(Full::new(body.unwrap_or_default()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok((status, bytes))
    }

    /// `GET /health`; Ok when the agent says it is healthy.
    pub async fn health(&self, timeout: Duration) -> Result<(), AgentError> {
        let (status, body) = self.request(Method::GET, "/health", None, timeout).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(AgentError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    }

    /// Runs `argv` to completion through `POST /commands/run`.
    pub async fn run(&self, argv: &[&str], timeout: Duration) -> Result<CommandOutput, AgentError> {
        let (command, args) = argv.split_first().map_or(("", &[][..]), |(c, a)| (*c, a));
        let body = serde_json::json!({
            "command": command,
            "args": args,
            "timeout": timeout.as_secs().max(1),
        });
        let (status, bytes) = self
            .request(
                Method::POST,
                "/commands/run",
                Some(Bytes::from(body.to_string())),
                timeout + Duration::from_secs(5),
            )
            .await?;
        if !status.is_success() {
            return Err(AgentError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}
