//! The manager object: shared state and the helpers every lifecycle verb uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hutch_runtime::{Backend, ResourceUsage, RuntimeError};
use hutch_store::{ListFilter, SandboxRecord, Store};
use hutch_types::{SandboxId, SandboxStatus, Verb};
use tokio::sync::OwnedMutexGuard;

use crate::tokens;
use crate::{ManagerConfig, ManagerError, Templates};

/// Sandboxes, their lifecycle and their tokens.
pub struct Manager {
    pub(crate) cfg: ManagerConfig,
    pub(crate) store: Store,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) templates: Templates,
    pub(crate) pool: crate::pool::Pool,
    pub(crate) sessions: crate::sessions::SessionLocks,
    /// One lock per sandbox: verbs on the same sandbox run one at a time.
    locks: Mutex<HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Manager {
    /// Wires the parts together.
    pub fn new(
        cfg: ManagerConfig,
        store: Store,
        backend: Arc<dyn Backend>,
        templates: Templates,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            store,
            backend,
            templates,
            pool: Default::default(),
            sessions: Default::default(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.cfg
    }

    /// The template registry.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// The backend's name (`native`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub(crate) async fn lock(&self, id: &SandboxId) -> OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id.clone()).or_default().clone()
        };
        m.lock_owned().await
    }

    pub(crate) fn forget_lock(&self, id: &SandboxId) {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Runs a backend operation on a blocking thread.
    pub(crate) async fn backend_op<T, F>(&self, f: F) -> Result<T, ManagerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, RuntimeError> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || f(backend.as_ref()))
            .await
            .map_err(|e| ManagerError::Task(e.to_string()))?
            .map_err(ManagerError::from)
    }

    /// The record, or `NotFound`.
    pub fn get(&self, id: &SandboxId) -> Result<SandboxRecord, ManagerError> {
        self.store
            .get_sandbox(id)?
            .ok_or_else(|| ManagerError::NotFound(id.clone()))
    }

    /// The record, after checking that `verb` is allowed in its status.
    pub(crate) fn get_for(
        &self,
        id: &SandboxId,
        verb: Verb,
    ) -> Result<SandboxRecord, ManagerError> {
        let r = self.get(id)?;
        if !r.status.allows(verb) {
            return Err(ManagerError::WrongState {
                id: id.clone(),
                status: r.status,
                verb,
            });
        }
        Ok(r)
    }

    /// A page of sandboxes and the cursor of the next page, if any.
    pub fn list(
        &self,
        status: Option<SandboxStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SandboxRecord>, Option<String>), ManagerError> {
        let after_seq = match cursor {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ManagerError::Invalid(format!("invalid cursor {c:?}")))?,
            ),
        };
        let limit = limit.clamp(1, 1000);
        let mut rows = self.store.list_sandboxes(&ListFilter {
            status,
            after_seq,
            limit: limit + 1,
        })?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(seq, _)| seq.to_string())
        } else {
            None
        };
        Ok((rows.into_iter().map(|(_, r)| r).collect(), next))
    }

    /// The socket of a sandbox's agent, for the gateway.
    pub fn agent_socket(&self, id: &SandboxId) -> PathBuf {
        self.backend.agent_socket(id)
    }

    /// A TCP connection to `port` on the loopback of running sandbox `id`, made inside its
    /// network namespace (what preview URLs are forwarded over). Takes no sandbox lock: like an
    /// agent call, it does not change the sandbox, and it must not wait behind a long verb.
    pub async fn connect_port(
        &self,
        id: &SandboxId,
        port: u16,
        timeout: Duration,
    ) -> Result<std::net::TcpStream, ManagerError> {
        self.get_for(id, Verb::UseAgent)?;
        let sandbox = id.clone();
        let result = self
            .backend_op(move |b| b.connect_tcp(&sandbox, port, timeout))
            .await;
        match result {
            Err(ManagerError::Runtime(RuntimeError::PortUnreachable { port, source, .. })) => {
                Err(ManagerError::PortUnreachable {
                    id: id.clone(),
                    port,
                    source,
                })
            }
            other => other,
        }
    }

    /// The sandbox a bearer token belongs to, if the token is valid now.
    pub fn resolve_token(&self, token: &str) -> Result<Option<SandboxRecord>, ManagerError> {
        let now = Utc::now().timestamp();
        match self.store.token_sandbox(&tokens::digest(token), now)? {
            Some(id) => Ok(self.store.get_sandbox(&id)?),
            None => Ok(None),
        }
    }

    /// Resource use of a sandbox.
    pub async fn usage(&self, id: &SandboxId) -> Result<ResourceUsage, ManagerError> {
        self.get(id)?;
        let id = id.clone();
        self.backend_op(move |b| b.usage(&id)).await
    }

    /// Issues a new token for a sandbox (older ones stay valid until they expire).
    pub fn issue_token(&self, id: &SandboxId) -> Result<crate::IssuedToken, ManagerError> {
        let token = tokens::generate();
        let expires_at = Utc::now().timestamp() + self.cfg.token_ttl.as_secs() as i64;
        self.store
            .insert_token(&tokens::digest(&token), id, expires_at)?;
        Ok(crate::IssuedToken { token, expires_at })
    }

    /// Invalidates every token of a sandbox.
    pub fn revoke_tokens(&self, id: &SandboxId) -> Result<usize, ManagerError> {
        self.get(id)?;
        Ok(self.store.revoke_tokens(id)?)
    }
}
