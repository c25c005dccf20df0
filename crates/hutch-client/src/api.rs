//! The control plane as typed calls (`spec/hopx-protocol.md` §6): what the `hutch` CLI uses.
//!
//! Every call returns the server's JSON object alongside a typed view of the fields a client
//! reads, so a caller can show a table from the view and still print the server's object as it
//! was (`--json`) — fields this client does not know about included. Non-2xx replies become
//! [`ApiError::Server`] carrying the server's own message and code.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control::{ControlClient, ControlError};

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server could not be reached or the exchange broke.
    #[error(transparent)]
    Transport(#[from] ControlError),
    /// The server answered with an error status.
    #[error("{}", server_message(message, code.as_deref()))]
    Server {
        /// The status.
        status: StatusCode,
        /// The server's message (or the body text when it had no structured message).
        message: String,
        /// The server's upper-case code, when it gave one.
        code: Option<String>,
        /// The request id, when it gave one.
        request_id: Option<String>,
        /// The whole body as JSON (`Null` when it was not JSON).
        body: Value,
    },
    /// A 2xx reply that is not the JSON the call expects.
    #[error("unexpected reply from the server to {what}: {detail}")]
    Decode {
        /// The call.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

fn server_message(message: &str, code: Option<&str>) -> String {
    match code {
        Some(c) if !c.is_empty() => format!("{message} ({c})"),
        _ => message.to_string(),
    }
}

impl ApiError {
    /// The HTTP status of a server error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Server { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Builds the error for a non-2xx reply. Understands the control-plane shape (`error` an
    /// object), the agent shape (`error` a string, `code` beside it) and plain text.
    pub fn from_reply(status: StatusCode, body: &[u8]) -> Self {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: &Value| {
            v.as_str()
                .map(|s| s.trim_end().to_string())
                .filter(|s| !s.is_empty())
        };
        let (message, code, request_id) = match json.get("error") {
            Some(Value::Object(e)) => (
                e.get("message").and_then(text),
                e.get("code").and_then(text),
                e.get("request_id").and_then(text),
            ),
            Some(e @ Value::String(_)) => (
                text(e).or_else(|| json.get("message").and_then(text)),
                json.get("code").and_then(text),
                json.get("request_id").and_then(text),
            ),
            _ => (
                json.get("message").and_then(text),
                json.get("code").and_then(text),
                json.get("request_id").and_then(text),
            ),
        };
        let message = message.unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(body).trim().to_string();
            if raw.is_empty() {
                format!(
                    "the server answered {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_string()
            } else {
                raw.chars().take(2000).collect()
            }
        });
        ApiError::Server {
            status,
            message,
            code,
            request_id,
            body: json,
        }
    }
}

/// A server object: the typed fields a client reads, and the JSON exactly as the server sent it.
#[derive(Debug, Clone)]
pub struct Object<T> {
    /// The typed view.
    pub view: T,
    /// The server's JSON.
    pub raw: Value,
}

impl<T: DeserializeOwned> Object<T> {
    fn parse(what: &str, raw: Value) -> Result<Self, ApiError> {
        let view = T::deserialize(&raw).map_err(|e| ApiError::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Self { view, raw })
    }
}

impl<T> std::ops::Deref for Object<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.view
    }
}

/// The fields of a sandbox a client reads (`spec` §6). Everything but `id` and `status` is
/// optional so an older or newer server still parses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sandbox {
    /// Sandbox id.
    pub id: String,
    /// `creating`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Template name.
    #[serde(default)]
    pub template_name: Option<String>,
    /// Template id.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Agent base URL.
    #[serde(default)]
    pub public_host: Option<String>,
    /// Fallback agent base URL.
    #[serde(default)]
    pub direct_url: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339; none = never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Auto-kill delay.
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    /// Internet access.
    #[serde(default)]
    pub internet_access: Option<bool>,
    /// Limits: `vcpu`, `memory_mb`, `disk_mb`.
    #[serde(default)]
    pub resources: Option<Value>,
    /// Agent token (create and token-refresh replies).
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Expiry of `auth_token`.
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

/// The fields of a template a client reads (`spec` §6.10).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Template {
    /// Id (a string).
    pub id: String,
    /// Slug.
    pub name: String,
    /// Human name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Main language.
    #[serde(default)]
    pub language: Option<String>,
    /// pending, building, active, failed or archived.
    #[serde(default)]
    pub status: Option<String>,
    /// Whether sandboxes can be created from it.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Whether it ships with the server.
    #[serde(default)]
    pub is_public: Option<bool>,
    /// Build that produced it.
    #[serde(default)]
    pub build_id: Option<String>,
    /// `vcpu`, `memory_mb`, `disk_gb`.
    #[serde(default)]
    pub default_resources: Option<Value>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `POST /v1/sandboxes`. `None` fields are left out, so the server's defaults apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateSandbox {
    /// Template name or id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    /// Auto-kill after this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Internet access (server default: on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internet_access: Option<bool>,
    /// Environment of every process in the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// A lifecycle action on an existing sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Freeze (memory kept).
    Pause,
    /// Thaw.
    Resume,
    /// End every process, keep the files.
    Stop,
    /// Start a stopped sandbox.
    Start,
}

impl Lifecycle {
    /// The path segment (`pause`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pause => "pause",
            Lifecycle::Resume => "resume",
            Lifecycle::Stop => "stop",
            Lifecycle::Start => "start",
        }
    }
}

/// The reply to `POST /v1/templates/builds`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildStarted {
    /// Build id (polled for status and logs).
    pub build_id: String,
    /// The template being built.
    #[serde(default)]
    pub template_id: Option<String>,
    /// `building`.
    #[serde(default)]
    pub status: Option<String>,
    /// Where the log is.
    #[serde(default)]
    pub logs_url: Option<String>,
}

/// `GET /v1/templates/build/{build_id}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildStatus {
    /// Build id.
    #[serde(default)]
    pub build_id: String,
    /// The template being built.
    #[serde(default)]
    pub template_id: Option<String>,
    /// `building`, `active` or `failed`.
    pub status: String,
    /// 0–100.
    #[serde(default)]
    pub progress: Option<f64>,
    /// What the build is doing now (e.g. the step being run).
    #[serde(default)]
    pub current_step: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error_message: Option<String>,
    /// How long it took.
    #[serde(default)]
    pub build_duration_ms: Option<u64>,
}

impl BuildStatus {
    /// Whether the build has ended (successfully or not).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "active" | "success" | "failed" | "error"
        )
    }

    /// Whether it ended well.
    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "active" | "success")
    }
}

/// `GET /v1/templates/build/{build_id}/logs?offset=N`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildLogs {
    /// Log text since the offset asked for.
    #[serde(default)]
    pub logs: String,
    /// The offset to ask for next.
    #[serde(default)]
    pub offset: u64,
    /// Build status.
    #[serde(default)]
    pub status: Option<String>,
    /// No more log will come.
    #[serde(default)]
    pub complete: bool,
}

/// A page of a list.
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Option<Vec<Value>>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Percent-encodes one URL path segment or query value.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ControlClient {
    /// Sends a request and returns the JSON body of a 2xx reply; any other status becomes
    /// [`ApiError::Server`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let what = format!("{method} {path}");
        let r = self
            .send(method, path, body.map(|b| Bytes::from(b.to_string())), &[])
            .await?;
        if !r.status.is_success() {
            return Err(ApiError::from_reply(r.status, &r.body));
        }
        if r.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&r.body).map_err(|e| ApiError::Decode {
            what,
            detail: e.to_string(),
        })
    }

    async fn object<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Object<T>, ApiError> {
        let what = format!("{method} {path}");
        let raw = self.call(method, path, body).await?;
        Object::parse(&what, raw)
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Value, ApiError> {
        self.call(Method::GET, "/health", None).await
    }

    /// `POST /v1/sandboxes`; the reply carries `auth_token`.
    pub async fn create_sandbox(&self, req: &CreateSandbox) -> Result<Object<Sandbox>, ApiError> {
        let body = serde_json::to_value(req).map_err(|e| ApiError::Decode {
            what: "create".into(),
            detail: e.to_string(),
        })?;
        self.object(Method::POST, "/v1/sandboxes", Some(&body))
            .await
    }

    /// Every sandbox (all pages of `GET /v1/sandboxes`), optionally with one status.
    pub async fn list_sandboxes(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<Object<Sandbox>>, ApiError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: a server that keeps saying `has_more` cannot make the client loop forever.
        for _ in 0..10_000 {
            let mut path = "/v1/sandboxes?limit=1000".to_string();
            if let Some(s) = status {
                path.push_str(&format!("&status={}", encode_component(s)));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode_component(c)));
            }
            let page: Page = {
                let raw = self.call(Method::GET, &path, None).await?;
                serde_json::from_value(raw).map_err(|e| ApiError::Decode {
                    what: format!("GET {path}"),
                    detail: e.to_string(),
                })?
            };
            for v in page.data.unwrap_or_default() {
                out.push(Object::parse("GET /v1/sandboxes", v)?);
            }
            match page.next_cursor {
                Some(c) if page.has_more && !c.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// `GET /v1/sandboxes/{id}`.
    pub async fn get_sandbox(&self, id: &str) -> Result<Object<Sandbox>, ApiError> {
        self.object(
            Method::GET,
            &format!("/v1/sandboxes/{}", encode_component(id)),
            None,
        )
        .await
    }

    /// `DELETE /v1/sandboxes/{id}`.
    pub async fn delete_sandbox(&self, id: &str) -> Result<Value, ApiError> {
        self.call(
            Method::DELETE,
            &format!("/v1/sandboxes/{}", encode_component(id)),
            None,
        )
        .await
    }

    /// `POST /v1/sandboxes/{id}/{pause|resume|stop|start}`.
    pub async fn lifecycle(&self, id: &str, verb: Lifecycle) -> Result<Object<Sandbox>, ApiError> {
        self.object(
            Method::POST,
            &format!("/v1/sandboxes/{}/{}", encode_component(id), verb.as_str()),
            None,
        )
        .await
    }

    /// `PUT /v1/sandboxes/{id}/timeout`: the sandbox is killed `seconds` from now.
    pub async fn set_timeout(&self, id: &str, seconds: i64) -> Result<Object<Sandbox>, ApiError> {
        self.object(
            Method::PUT,
            &format!("/v1/sandboxes/{}/timeout", encode_component(id)),
            Some(&serde_json::json!({ "timeout_seconds": seconds })),
        )
        .await
    }

    /// `POST /v1/sandboxes/{id}/token/refresh`: a fresh agent token.
    pub async fn refresh_token(&self, id: &str) -> Result<String, ApiError> {
        let path = format!("/v1/sandboxes/{}/token/refresh", encode_component(id));
        let v = self.call(Method::POST, &path, None).await?;
        v.get("auth_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::Decode {
                what: format!("POST {path}"),
                detail: "no auth_token in the reply".into(),
            })
    }

    /// `GET /v1/templates`.
    pub async fn list_templates(&self) -> Result<Vec<Object<Template>>, ApiError> {
        let raw = self.call(Method::GET, "/v1/templates", None).await?;
        let page: Page = serde_json::from_value(raw).map_err(|e| ApiError::Decode {
            what: "GET /v1/templates".into(),
            detail: e.to_string(),
        })?;
        page.data
            .unwrap_or_default()
            .into_iter()
            .map(|v| Object::parse("GET /v1/templates", v))
            .collect()
    }

    /// `GET /v1/templates/{name or id}`.
    pub async fn get_template(&self, name: &str) -> Result<Object<Template>, ApiError> {
        self.object(
            Method::GET,
            &format!("/v1/templates/{}", encode_component(name)),
            None,
        )
        .await
    }

    /// `DELETE /v1/templates/{name or id}`.
    pub async fn delete_template(&self, name: &str) -> Result<Value, ApiError> {
        self.call(
            Method::DELETE,
            &format!("/v1/templates/{}", encode_component(name)),
            None,
        )
        .await
    }

    /// `POST /v1/templates/builds`: starts building template `name` from a TOML spec.
    pub async fn start_build(
        &self,
        name: &str,
        spec: &str,
        force: bool,
    ) -> Result<Object<BuildStarted>, ApiError> {
        let body = serde_json::json!({ "name": name, "spec": spec, "force": force });
        self.object(Method::POST, "/v1/templates/builds", Some(&body))
            .await
    }

    /// `GET /v1/templates/build/{build_id}/status`.
    pub async fn build_status(&self, build_id: &str) -> Result<Object<BuildStatus>, ApiError> {
        self.object(
            Method::GET,
            &format!("/v1/templates/build/{}/status", encode_component(build_id)),
            None,
        )
        .await
    }

    /// `GET /v1/templates/build/{build_id}/logs?offset=N`: the log text after `offset`.
    pub async fn build_logs(
        &self,
        build_id: &str,
        offset: u64,
    ) -> Result<Object<BuildLogs>, ApiError> {
        self.object(
            Method::GET,
            &format!(
                "/v1/templates/build/{}/logs?offset={offset}",
                encode_component(build_id)
            ),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_every_shape() {
        let e = ApiError::from_reply(
            StatusCode::NOT_FOUND,
            br#"{"error":{"message":"Sandbox x not found","code":"RESOURCE_NOT_FOUND","request_id":"r1"}}"#,
        );
        assert_eq!(e.to_string(), "Sandbox x not found (RESOURCE_NOT_FOUND)");
        assert_eq!(e.code(), Some("RESOURCE_NOT_FOUND"));
        let e = ApiError::from_reply(
            StatusCode::CONFLICT,
            br#"{"error":"sandbox is paused","code":"SANDBOX_PAUSED"}"#,
        );
        assert_eq!(e.to_string(), "sandbox is paused (SANDBOX_PAUSED)");
        let e = ApiError::from_reply(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.to_string(), "upstream down");
        let e = ApiError::from_reply(StatusCode::NOT_FOUND, b"");
        assert_eq!(e.to_string(), "the server answered 404 Not Found");
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_component("sb-1_x.y~"), "sb-1_x.y~");
    }

    #[test]
    fn sandboxes_parse_leniently() {
        let raw = serde_json::json!({"id": "a", "status": "running", "extra": 1});
        let o: Object<Sandbox> = Object::parse("t", raw.clone()).unwrap();
        assert_eq!(o.id, "a");
        assert_eq!(o.raw, raw);
    }
}
