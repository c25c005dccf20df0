//! One MCP session's hold on hutch: its own sandbox (created on first use), the sandboxes it
//! created (killed when it ends), and the agent tokens of sandboxes it has used.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hutch_client::api::CreateSandbox;
use hutch_client::{ApiError, ControlClient, Method, SandboxClient, SandboxError, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{describe_api, ToolError};
use crate::McpConfig;

/// How long a control-plane call may take (creating a sandbox from a cold template is the
/// slowest, a few seconds).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// A sandbox the session can call: its id, an agent client with a valid token, and what the
/// tools report about it.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    /// Its id.
    pub id: String,
    /// Its agent, through the server's gateway.
    pub agent: SandboxClient,
    /// `http://{port}-<id>.localhost:7770/`, as the server builds it.
    pub preview_url: Option<String>,
}

impl Sandbox {
    /// The preview URL of `port`, or one built from the server URL when the server gave none.
    pub fn preview(&self, server_url: &str, port: u16) -> String {
        match &self.preview_url {
            Some(p) => p.replace("{port}", &port.to_string()),
            None => {
                let authority = server_url
                    .strip_prefix("http://")
                    .unwrap_or(server_url)
                    .split('/')
                    .next()
                    .unwrap_or_default();
                let port_part = authority
                    .rsplit_once(':')
                    .map(|(_, p)| format!(":{p}"))
                    .unwrap_or_default();
                format!("http://{port}-{}.localhost{port_part}/", self.id)
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The session's own sandbox, once made.
    default: Option<String>,
    /// Sandboxes this session created and kills when it ends.
    owned: Vec<String>,
    /// Agent clients (with tokens) of sandboxes used so far.
    known: HashMap<String, Sandbox>,
    /// Owned sandboxes' timeouts, and when each was last pushed back.
    extended: HashMap<String, (Duration, Instant)>,
    /// Set once the session has cleaned up: no new sandboxes after that.
    closed: bool,
}

/// One MCP session's sandboxes.
#[derive(Debug)]
pub(crate) struct Session {
    api: ControlClient,
    config: McpConfig,
    state: Mutex<State>,
}

impl Session {
    pub fn new(config: &McpConfig) -> Result<Self, hutch_client::ControlError> {
        Ok(Self {
            api: ControlClient::new(&config.url, config.api_key.clone())?
                .with_timeout(CONTROL_TIMEOUT),
            config: config.clone(),
            state: Mutex::new(State::default()),
        })
    }

    /// The control plane.
    pub fn api(&self) -> &ControlClient {
        &self.api
    }

    /// The server's URL.
    pub fn server_url(&self) -> &str {
        &self.config.url
    }

    /// The template of the session's sandbox.
    pub fn default_template(&self) -> &str {
        &self.config.template
    }

    /// The sandbox a tool call acts on: `explicit` when given (any sandbox the key can see),
    /// else the session's own, created now if this is the session's first call that needs one.
    pub async fn sandbox(&self, explicit: Option<&str>) -> Result<Sandbox, ToolError> {
        if let Some(id) = explicit {
            let id = id.trim();
            if id.is_empty() {
                return Err(ToolError::Invalid(
                    "sandbox_id must not be empty (leave it out to use the session's sandbox)"
                        .into(),
                ));
            }
            let cached = self.state.lock().await.known.get(id).cloned();
            if let Some(s) = cached {
                self.keep_alive(&s.id).await;
                return Ok(s);
            }
            let s = self.connect(id).await?;
            self.state
                .lock()
                .await
                .known
                .insert(id.to_string(), s.clone());
            return Ok(s);
        }
        // Held across the create, so two first calls at once make one sandbox, not two.
        let mut state = self.state.lock().await;
        if let Some(s) = state
            .default
            .as_ref()
            .and_then(|id| state.known.get(id))
            .cloned()
        {
            drop(state);
            self.keep_alive(&s.id).await;
            return Ok(s);
        }
        if state.closed {
            return Err(ToolError::Sandbox("the MCP session has ended".into()));
        }
        let template = self.config.template.clone();
        let s = self.create_locked(&mut state, &template, None).await?;
        tracing::info!(sandbox = %s.id, "created the MCP session's sandbox");
        state.default = Some(s.id.clone());
        Ok(s)
    }

    /// Creates a sandbox owned by the session (`keep`: not killed when the session ends).
    pub async fn create(
        &self,
        template: &str,
        timeout: Option<Duration>,
        keep: bool,
    ) -> Result<(Sandbox, Value), ToolError> {
        let mut state = self.state.lock().await;
        if state.closed {
            return Err(ToolError::Sandbox("the MCP session has ended".into()));
        }
        let s = self.create_locked(&mut state, template, timeout).await?;
        if keep {
            state.owned.retain(|id| id != &s.id);
            state.extended.remove(&s.id);
        }
        drop(state);
        let raw = self.api.get_sandbox(&s.id).await?.raw;
        Ok((s, raw))
    }

    async fn create_locked(
        &self,
        state: &mut State,
        template: &str,
        timeout: Option<Duration>,
    ) -> Result<Sandbox, ToolError> {
        let timeout = timeout.unwrap_or(self.config.sandbox_timeout);
        let req = CreateSandbox {
            template_name: Some(template.to_string()),
            timeout_seconds: Some(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let created = self.api.create_sandbox(&req).await.map_err(|e| {
            ToolError::Sandbox(format!(
                "cannot create a sandbox from template {template:?}: {}",
                describe_api(&e)
            ))
        })?;
        let Some(token) = created.auth_token.clone() else {
            return Err(ToolError::Sandbox(format!(
                "the server created sandbox {} but sent no agent token",
                created.id
            )));
        };
        state.owned.push(created.id.clone());
        state
            .extended
            .insert(created.id.clone(), (timeout, Instant::now()));
        let s = Sandbox {
            id: created.id.clone(),
            agent: self.agent(&token)?,
            preview_url: created.raw["preview_url"].as_str().map(str::to_string),
        };
        state.known.insert(s.id.clone(), s.clone());
        Ok(s)
    }

    /// Pushes back the hutch timeout of a sandbox the session owns, at most every quarter of
    /// the timeout: a session that keeps working keeps its sandbox, one that stops loses it a
    /// timeout later. Failures are only logged; the call it precedes reports what matters.
    async fn keep_alive(&self, id: &str) {
        let timeout = {
            let mut state = self.state.lock().await;
            let Some((timeout, last)) = state.extended.get_mut(id) else {
                return; // not ours: its owner decides how long it lives
            };
            if last.elapsed() < *timeout / 4 {
                return;
            }
            *last = Instant::now();
            *timeout
        };
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        if let Err(e) = self.api.set_timeout(id, secs).await {
            tracing::warn!(sandbox = %id, error = %describe_api(&e), "cannot extend the sandbox's timeout");
        }
    }

    /// A client for an existing sandbox: its record and a fresh token.
    async fn connect(&self, id: &str) -> Result<Sandbox, ToolError> {
        let record = self
            .api
            .get_sandbox(id)
            .await
            .map_err(|e| match e.status() {
                Some(StatusCode::NOT_FOUND) => {
                    ToolError::Sandbox(format!("sandbox {id} not found"))
                }
                _ => e.into(),
            })?;
        let token = self.api.refresh_token(id).await?;
        Ok(Sandbox {
            id: record.id.clone(),
            agent: self.agent(&token)?,
            preview_url: record.raw["preview_url"].as_str().map(str::to_string),
        })
    }

    /// Agent calls go through the server's own gateway (same port; the token picks the
    /// sandbox), not the sandbox's `public_host`, which names the server as *clients* reach it
    /// and may not be reachable from here (a TLS proxy in front, a public name).
    fn agent(&self, token: &str) -> Result<SandboxClient, ToolError> {
        SandboxClient::new(&self.config.url, token)
            .map_err(|e| ToolError::sandbox("bad server URL", e))
    }

    /// An agent call, retried once with a fresh token when the old one was refused (it expired
    /// or was revoked while cached).
    pub async fn call(
        &self,
        sandbox: &Sandbox,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, SandboxError> {
        let first = sandbox
            .agent
            .clone()
            .with_timeout(timeout)
            .request(method.clone(), path, body)
            .await;
        match first {
            Err(SandboxError::Api(ApiError::Server {
                status: StatusCode::UNAUTHORIZED,
                ..
            })) => {
                let token = match self.api.refresh_token(&sandbox.id).await {
                    Ok(t) => t,
                    Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                        return Err(self.lost(&sandbox.id).await);
                    }
                    Err(e) => return Err(e.into()),
                };
                let agent = SandboxClient::new(&self.config.url, &token).map_err(ApiError::from)?;
                if let Some(s) = self.state.lock().await.known.get_mut(&sandbox.id) {
                    s.agent = agent.clone();
                }
                agent
                    .with_timeout(timeout)
                    .request(method, path, body)
                    .await
            }
            Err(SandboxError::Api(ApiError::Server {
                status: StatusCode::GONE,
                ..
            })) => Err(self.lost(&sandbox.id).await),
            other => other,
        }
    }

    /// Forgets a sandbox that no longer exists (deleted elsewhere, or expired) and says so; if
    /// it was the session's own, the next call that needs one makes a new one.
    async fn lost(&self, id: &str) -> SandboxError {
        let mut state = self.state.lock().await;
        state.known.remove(id);
        state.extended.remove(id);
        state.owned.retain(|o| o != id);
        let was_default = state.default.as_deref() == Some(id);
        if was_default {
            state.default = None;
        }
        let (what, next) = if was_default {
            (
                format!(
                    "the session's sandbox {id} no longer exists (deleted or expired, with its \
                     files and state)"
                ),
                "the next call starts a new one",
            )
        } else {
            (
                format!("sandbox {id} no longer exists"),
                "it was deleted or expired",
            )
        };
        SandboxError::Io {
            what,
            source: std::io::Error::other(next),
        }
    }

    /// Whether `id` is the session's own sandbox, and whether the session created it.
    pub async fn ownership(&self, id: &str) -> (bool, bool) {
        let state = self.state.lock().await;
        (
            state.default.as_deref() == Some(id),
            state.owned.iter().any(|o| o == id),
        )
    }

    /// Deletes a sandbox and forgets it; the session's own is made again on next use.
    pub async fn kill(&self, id: &str) -> Result<(), ToolError> {
        let result = self.api.delete_sandbox(id).await;
        let mut state = self.state.lock().await;
        let gone = match &result {
            Ok(_) => true,
            Err(e) => e.status() == Some(StatusCode::NOT_FOUND),
        };
        if gone {
            state.known.remove(id);
            state.extended.remove(id);
            state.owned.retain(|o| o != id);
            if state.default.as_deref() == Some(id) {
                state.default = None;
            }
        }
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                Err(ToolError::Sandbox(format!("sandbox {id} not found")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the session: kills every sandbox it created (and did not hand over with `keep`).
    /// Later tool calls that need a new sandbox fail.
    pub async fn close(&self) {
        let owned = {
            let mut state = self.state.lock().await;
            state.closed = true;
            state.default = None;
            state.known.clear();
            state.extended.clear();
            std::mem::take(&mut state.owned)
        };
        kill_all(&self.api, owned).await;
    }
}

async fn kill_all(api: &ControlClient, ids: Vec<String>) {
    for id in ids {
        match api.delete_sandbox(&id).await {
            Ok(_) => tracing::info!(sandbox = %id, "killed the MCP session's sandbox"),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %describe_api(&e), "cannot kill sandbox")
            }
        }
    }
}

/// A session dropped without [`Session::close`] (an HTTP session deleted or expired) still
/// kills its sandboxes, in the background: drop cannot wait.
impl Drop for Session {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let owned = std::mem::take(&mut state.owned);
        if owned.is_empty() {
            return;
        }
        let api = self.api.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { kill_all(&api, owned).await });
            }
            Err(_) => {
                let cleanup = std::thread::Builder::new()
                    .name("hutch-mcp-cleanup".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(kill_all(&api, owned)),
                            Err(e) => tracing::warn!(error = %e, "cannot kill session sandboxes"),
                        }
                    });
                if let Ok(t) = cleanup {
                    let _ = t.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_urls_fill_the_port() {
        let s = Sandbox {
            id: "abc".into(),
            agent: SandboxClient::new("http://127.0.0.1:1", "t").unwrap(),
            preview_url: Some("http://{port}-abc.localhost:7770/".into()),
        };
        assert_eq!(
            s.preview("http://x", 5000),
            "http://5000-abc.localhost:7770/"
        );
        let s = Sandbox {
            preview_url: None,
            ..s
        };
        assert_eq!(
            s.preview("http://127.0.0.1:7770", 8000),
            "http://8000-abc.localhost:7770/"
        );
    }
}
