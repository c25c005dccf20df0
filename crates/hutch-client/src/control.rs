//! A client for the control plane and gateway over HTTP (the CLI's and the tests').

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// A request body that may be streamed (file uploads).
pub type StreamBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request body held in memory, as a [`StreamBody`].
pub fn full_body(bytes: impl Into<Bytes>) -> StreamBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A failed control-plane call.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The URL is not `http://host:port[/prefix]`.
    #[error("unsupported server URL {0:?} (expected http://HOST:PORT)")]
    BadUrl(String),
    /// The server could not be reached.
    #[error("cannot connect to {addr}")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("request failed")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request")]
    Request(#[from] hyper::http::Error),
    /// No answer in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
}

/// A response: status, headers, body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A client for one hutch server.
#[derive(Debug, Clone)]
pub struct ControlClient {
    authority: String,
    prefix: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl ControlClient {
    /// A client for `base_url` (`http://HOST:PORT`), sending `api_key` as `X-API-Key`.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ControlError> {
        let rest = base_url
            .strip_prefix("http://")
            .ok_or_else(|| ControlError::BadUrl(base_url.to_string()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(ControlError::BadUrl(base_url.to_string()));
        }
        Ok(Self {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            api_key,
            timeout: Duration::from_secs(300),
        })
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL path prefix (empty, or `/something` without a trailing slash).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The API key sent as `X-API-Key`, if any.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a request with optional extra headers (they replace the API key header if they set
    /// it), returning status, headers and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ControlError> {
        tokio::time::timeout(self.timeout, self.send_inner(method, path, body, headers))
            .await
            .map_err(|_| ControlError::Timeout(self.timeout))?
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ControlError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ControlError::Connect {
                addr: self.authority.clone(),
                source,
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        let mut req = req.body(Full::new(body.unwrap_or_default()))?;
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                req.headers_mut().insert(k, v);
            }
        }
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Sends a request with a streamed body and returns the response with its body unread, so
    /// transfers of any size go through without being held in memory. Only connecting is
    /// bounded by the client's timeout: an upload's response comes after its whole body, which
    /// may take any time.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: StreamBody,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<Incoming>, ControlError> {
        let connect = async {
            let stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|source| ControlError::Connect {
                    addr: self.authority.clone(),
                    source,
                })?;
            Ok::<_, ControlError>(
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?,
            )
        };
        let (mut sender, conn) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| ControlError::Timeout(self.timeout))??;
        // The connection task ends by itself once the response body has been read.
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.authority);
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        let mut req = req.body(body)?;
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                req.headers_mut().insert(k, v);
            }
        }
        Ok(sender.send_request(req).await?)
    }

    /// Sends JSON (or nothing) and parses the JSON reply.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ControlError> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let r = self.send(method, path, body, &[]).await?;
        Ok((r.status, r.json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = ControlClient::new("http://127.0.0.1:7770/", None).unwrap();
        assert_eq!(c.authority, "127.0.0.1:7770");
        assert_eq!(c.prefix, "");
        let c = ControlClient::new("http://h:1/api", None).unwrap();
        assert_eq!(c.prefix, "/api");
        assert!(ControlClient::new("https://h", None).is_err());
        assert!(ControlClient::new("http://", None).is_err());
    }
}
