//! Persistent execution contexts (`docs/sessions-api.md`): a named Python context whose state
//! outlives its kernel, its sandbox's stop/start, a server restart and the sandbox itself.
//!
//! The kernel inside the sandbox pickles the state after every successful execution and
//! restores it into a fresh kernel; this module only moves the opaque bytes: after each
//! execution from the sandbox into SQLite, and into a sandbox that does not have them (a new
//! one, after the old one was killed). The control plane never unpickles anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use hutch_client::{AgentClient, AgentError};
use hutch_store::{SessionArtifact, SessionExecution, SessionRecord};
use hutch_types::sessions::{
    AgentExecution, ArtifactObject, CreateSessionRequest, ExecutionObject, SessionExecuteRequest,
    SessionHistoryEntry, SessionStats,
};
use hutch_types::{SandboxId, SandboxStatus, SessionId};
use hyper::{Method, StatusCode};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{CreateRequest, Manager, ManagerError};

/// The template sessions run in unless told otherwise.
pub const DEFAULT_TEMPLATE: &str = "code-interpreter";
/// `timeout` of an execution that names none, seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;
/// Longest timeout accepted, seconds (as the agent's).
const MAX_TIMEOUT_S: f64 = 24.0 * 3600.0;
/// How long the agent gets beyond the code's own timeout (interrupt grace, capture, saving).
const AGENT_SLACK: Duration = Duration::from_secs(30);
/// Agent calls that move state or files.
const AGENT_IO: Duration = Duration::from_secs(60);
/// Longest code accepted (bytes).
const MAX_CODE: usize = 1 << 20;

/// In-memory bookkeeping: one execution per session at a time, and which sandboxes are known
/// to hold a session's state file.
#[derive(Default)]
pub(crate) struct SessionLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    synced: Mutex<HashSet<(SandboxId, String)>>,
}

impl SessionLocks {
    fn lock_for(&self, sid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sid.to_string())
            .or_default()
            .clone()
    }

    fn is_synced(&self, sandbox: &SandboxId, sid: &str) -> bool {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(sandbox.clone(), sid.to_string()))
    }

    fn mark_synced(&self, sandbox: &SandboxId, sid: &str) {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((sandbox.clone(), sid.to_string()));
    }

    /// No sandbox is known to hold the session's latest state any more.
    fn forget_synced(&self, sid: &str) {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, s)| s != sid);
    }

    fn forget(&self, sid: &str) {
        self.forget_synced(sid);
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
    }
}

fn agent_error(e: AgentError) -> ManagerError {
    ManagerError::Agent(e.to_string())
}

/// Fails unless the agent answered 2xx.
fn expect_ok(status: StatusCode, body: &Bytes, what: &str) -> Result<(), ManagerError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(ManagerError::Agent(format!(
            "{what}: agent answered {status}: {}",
            String::from_utf8_lossy(body)
        )))
    }
}

impl Manager {
    /// Checks a session id from a client.
    pub fn parse_session_id(raw: &str) -> Result<SessionId, ManagerError> {
        SessionId::parse(raw).map_err(|e| ManagerError::Invalid(e.to_string()))
    }

    /// Creates a session, or returns the existing one with this id; the bool says whether it
    /// is new. Its sandbox is created by the first execution (unless `sandbox_id` names one).
    /// An existing session given another `sandbox_id` moves there: its state follows on the
    /// next execution, and a sandbox the session had created for itself is killed.
    pub async fn create_session(
        self: &Arc<Self>,
        req: CreateSessionRequest,
    ) -> Result<(SessionRecord, bool), ManagerError> {
        let sid = match req.session_id.as_deref() {
            Some(raw) => Self::parse_session_id(raw)?,
            None => SessionId::generate(|| rand::thread_rng().gen()),
        };
        let sandbox = match req.sandbox_id.as_deref() {
            Some(raw) => {
                let id = SandboxId::parse(raw).map_err(|e| ManagerError::Invalid(e.to_string()))?;
                self.get(&id)?;
                Some(id)
            }
            None => None,
        };
        if let Some(existing) = self.store.get_session(sid.as_str())? {
            return match sandbox {
                Some(to) if existing.sandbox_id.as_deref() != Some(to.as_str()) => {
                    Ok((self.move_session(existing, to).await?, false))
                }
                _ => Ok((existing, false)),
            };
        }
        let template = req
            .template
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
        if self.templates.find(&template).is_none() {
            return Err(ManagerError::TemplateNotFound(template));
        }
        let env = req.env_vars.unwrap_or_default();
        crate::lifecycle::validate_env(&env)?;
        if let Some(t) = req.timeout_seconds {
            if t <= 0 {
                return Err(ManagerError::Invalid(
                    "timeout_seconds must be positive".into(),
                ));
            }
        }
        let now = Utc::now().timestamp();
        let record = SessionRecord {
            session_id: sid.to_string(),
            sandbox_id: sandbox.map(String::from),
            owns_sandbox: false,
            template,
            env_vars: serde_json::to_string(&env).unwrap_or_else(|_| "{}".into()),
            timeout_seconds: req.timeout_seconds,
            created_at: now,
            updated_at: now,
            execution_count: 0,
            variables: "[]".into(),
        };
        if !self.store.insert_session(&record)? {
            // Created concurrently by another request: that one wins.
            return Ok((self.session(sid.as_str())?, false));
        }
        tracing::info!(session = %sid, "session created");
        Ok((record, true))
    }

    /// Binds the session to another sandbox (killing the one it created for itself, if any).
    async fn move_session(
        self: &Arc<Self>,
        rec: SessionRecord,
        to: SandboxId,
    ) -> Result<SessionRecord, ManagerError> {
        let lock = self.sessions.lock_for(&rec.session_id);
        let _guard = lock.lock().await;
        let old = rec
            .sandbox_id
            .as_deref()
            .and_then(|s| SandboxId::parse(s).ok());
        if let (Some(old), true) = (old, rec.owns_sandbox) {
            match self.delete(&old).await {
                Ok(()) | Err(ManagerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store.set_session_sandbox(
            &rec.session_id,
            Some(to.as_str()),
            false,
            Utc::now().timestamp(),
        )?;
        self.sessions.forget_synced(&rec.session_id);
        tracing::info!(session = %rec.session_id, sandbox = %to, "session moved");
        self.session(&rec.session_id)
    }

    /// A session, or `SessionNotFound`.
    pub fn session(&self, sid: &str) -> Result<SessionRecord, ManagerError> {
        self.store
            .get_session(sid)?
            .ok_or_else(|| ManagerError::SessionNotFound(sid.to_string()))
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, ManagerError> {
        Ok(self.store.all_sessions()?)
    }

    /// Deletes a session's state, history and artifact records; kills its sandbox if the
    /// session created it, else forgets the session inside it.
    pub async fn delete_session(self: &Arc<Self>, sid: &str) -> Result<(), ManagerError> {
        let lock = self.sessions.lock_for(sid);
        let _guard = lock.lock().await;
        let rec = self.session(sid)?;
        if let Some(id) = rec
            .sandbox_id
            .as_deref()
            .and_then(|s| SandboxId::parse(s).ok())
        {
            match self.get(&id) {
                Ok(_) if rec.owns_sandbox => match self.delete(&id).await {
                    Ok(()) | Err(ManagerError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                },
                Ok(r) if r.status == SandboxStatus::Running => {
                    let agent = AgentClient::new(self.agent_socket(&id));
                    let path = format!("/_hutch/sessions/{sid}");
                    if let Err(e) = agent.request(Method::DELETE, &path, None, AGENT_IO).await {
                        tracing::warn!(session = %sid, sandbox = %id, error = %e,
                            "cannot forget the session inside its sandbox");
                    }
                }
                _ => {}
            }
        }
        self.store.delete_session(sid)?;
        self.sessions.forget(sid);
        tracing::info!(session = %sid, "session deleted");
        Ok(())
    }

    /// Runs code in the session: in its sandbox (created, started or resumed as needed), with
    /// its state restored if the kernel is fresh; records the execution, the new state and the
    /// artifacts.
    pub async fn execute_in_session(
        self: &Arc<Self>,
        sid: &str,
        req: SessionExecuteRequest,
    ) -> Result<ExecutionObject, ManagerError> {
        if req.code.len() > MAX_CODE {
            return Err(ManagerError::Invalid(format!(
                "code is longer than {MAX_CODE} bytes"
            )));
        }
        let timeout = match req.timeout {
            None => DEFAULT_TIMEOUT_S,
            Some(t) if t.is_finite() && t > 0.0 => t.min(MAX_TIMEOUT_S),
            Some(t) => {
                return Err(ManagerError::Invalid(format!(
                    "timeout must be a positive number of seconds, not {t}"
                )))
            }
        };
        let lock = self.sessions.lock_for(sid);
        let _guard = lock.lock().await;
        let rec = self.session(sid)?;
        let sandbox = self.session_sandbox(&rec).await?;
        self.sync_state(&sandbox, sid).await?;

        let agent = AgentClient::new(self.agent_socket(&sandbox));
        let mut body = json!({
            "code": req.code,
            "language": "python",
            "session_id": sid,
            "timeout": timeout,
        });
        if let Some(key) = req.cache_key.as_deref().filter(|k| !k.is_empty()) {
            body["cache_key"] = json!(key);
        }
        let wait = Duration::from_secs_f64(timeout) + AGENT_SLACK;
        let (status, reply) = agent
            .request(
                Method::POST,
                "/execute",
                Some(Bytes::from(body.to_string())),
                wait,
            )
            .await
            .map_err(agent_error)?;
        let run: AgentExecution = match status {
            StatusCode::OK => serde_json::from_slice(&reply)
                .map_err(|e| ManagerError::Agent(format!("unreadable execution result: {e}")))?,
            // A timeout carries the result so far in `details`.
            StatusCode::REQUEST_TIMEOUT => {
                let v: Value = serde_json::from_slice(&reply).unwrap_or_default();
                let mut run: AgentExecution =
                    serde_json::from_value(v["details"].clone()).unwrap_or_default();
                run.timed_out = true;
                run.success = false;
                run
            }
            _ => {
                expect_ok(status, &reply, "execution")?;
                AgentExecution::default()
            }
        };

        let saved = match &run.persisted {
            Some(p) => {
                let state = self.fetch_state(&agent, sid).await?;
                let names = serde_json::to_string(&p.saved).unwrap_or_else(|_| "[]".into());
                Some((state, names))
            }
            None => None,
        };
        let out = execution_object(sid, &sandbox, timeout, run);
        let history = SessionExecution {
            execution_id: out.execution_id.clone(),
            timestamp: hutch_types::now_rfc3339(),
            code_digest: hex::encode(Sha256::digest(req.code.as_bytes())),
            code: req.code,
            execution_time: out.execution_time,
            success: out.success,
            cache_hit: out.cache_hit,
            error_type: out.error_type.clone(),
            artifacts: out.artifacts.len() as i64,
        };
        let artifacts: Vec<SessionArtifact> = out
            .artifacts
            .iter()
            .map(|a| SessionArtifact {
                artifact_id: a.id.clone(),
                sandbox_id: sandbox.to_string(),
                execution_id: a.execution_id.clone(),
                record: serde_json::to_string(a).unwrap_or_default(),
            })
            .collect();
        self.store.record_session_execution(
            sid,
            &history,
            saved.as_ref().map(|(s, n)| (s.as_ref(), n.as_str())),
            &artifacts,
            Utc::now().timestamp(),
        )?;
        Ok(out)
    }

    /// Forces a snapshot of the session's state (an empty execution saves it); returns the
    /// names saved.
    pub async fn save_session(self: &Arc<Self>, sid: &str) -> Result<Vec<String>, ManagerError> {
        let rec = self.session(sid)?;
        if rec.sandbox_id.is_none() && self.store.session_state(sid)?.is_none() {
            return Ok(Vec::new());
        }
        let req = SessionExecuteRequest {
            code: "pass".into(),
            cache_key: None,
            timeout: Some(60.0),
        };
        let out = self.execute_in_session(sid, req).await?;
        if !out.success {
            return Err(ManagerError::Agent(format!(
                "saving the session failed: {}",
                out.error.unwrap_or_default()
            )));
        }
        Ok(out.persisted.map(|p| p.saved).unwrap_or_default())
    }

    /// The newest `limit` executions, newest first.
    pub fn session_history(
        &self,
        sid: &str,
        limit: usize,
    ) -> Result<Vec<SessionHistoryEntry>, ManagerError> {
        self.session(sid)?;
        Ok(self.store.session_history(sid, limit.clamp(1, 10_000))?)
    }

    /// Totals over the session's history, and its sandbox's compilation cache.
    pub async fn session_stats(&self, sid: &str) -> Result<SessionStats, ManagerError> {
        let rec = self.session(sid)?;
        let (total, seconds, hits) = self.store.session_totals(sid)?;
        let artifacts = self.store.session_artifacts(sid, None)?.len();
        let mut compiled = 0;
        if let Some(id) = self.running_sandbox(&rec) {
            let agent = AgentClient::new(self.agent_socket(&id));
            if let Ok((StatusCode::OK, body)) = agent
                .request(Method::GET, "/cache/stats", None, AGENT_IO)
                .await
            {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                compiled = v["compiled_entries"].as_u64().unwrap_or(0);
            }
        }
        let per_execution = |x: f64| if total > 0 { x / total as f64 } else { 0.0 };
        Ok(SessionStats {
            session_id: sid.to_string(),
            total_executions: total,
            average_execution_time: per_execution(seconds),
            cache_hit_ratio: per_execution(hits as f64),
            cache_hits: hits,
            cache_misses: total - hits,
            cached_compilations: compiled,
            artifacts_count: artifacts,
        })
    }

    /// Empties the result and compilation caches of the session's sandbox (if it runs).
    pub async fn clear_session_cache(&self, sid: &str) -> Result<(), ManagerError> {
        let rec = self.session(sid)?;
        if let Some(id) = self.running_sandbox(&rec) {
            let agent = AgentClient::new(self.agent_socket(&id));
            let (status, body) = agent
                .request(Method::POST, "/cache/clear", None, AGENT_IO)
                .await
                .map_err(agent_error)?;
            expect_ok(status, &body, "cache clear")?;
        }
        Ok(())
    }

    /// The session's artifacts (of one execution when given).
    pub fn session_artifacts(
        &self,
        sid: &str,
        execution_id: Option<&str>,
    ) -> Result<Vec<ArtifactObject>, ManagerError> {
        self.session(sid)?;
        Ok(self
            .store
            .session_artifacts(sid, execution_id)?
            .iter()
            .filter_map(|a| serde_json::from_str(&a.record).ok())
            .collect())
    }

    /// An artifact's MIME type and bytes, from the sandbox that holds it.
    pub async fn session_artifact(
        &self,
        sid: &str,
        artifact_id: &str,
    ) -> Result<(String, Bytes), ManagerError> {
        self.session(sid)?;
        let gone = || ManagerError::ArtifactNotFound(artifact_id.to_string());
        let found = self
            .store
            .session_artifacts(sid, None)?
            .into_iter()
            .find(|a| a.artifact_id == artifact_id)
            .ok_or_else(gone)?;
        let record: ArtifactObject = serde_json::from_str(&found.record).map_err(|_| gone())?;
        let id = SandboxId::parse(&found.sandbox_id).map_err(|_| gone())?;
        match self.get(&id) {
            Ok(r) if r.status == SandboxStatus::Running => {}
            _ => return Err(gone()),
        }
        let agent = AgentClient::new(self.agent_socket(&id));
        let path = format!("/artifacts/{artifact_id}");
        let (status, body) = agent
            .request(Method::GET, &path, None, AGENT_IO)
            .await
            .map_err(agent_error)?;
        if status == StatusCode::NOT_FOUND {
            return Err(gone());
        }
        expect_ok(status, &body, "artifact download")?;
        Ok((record.mime, body))
    }

    /// Removes the session's artifact files (where their sandbox still runs) and records.
    pub async fn remove_session_artifacts(&self, sid: &str) -> Result<usize, ManagerError> {
        self.session(sid)?;
        let all = self.store.session_artifacts(sid, None)?;
        let mut by_sandbox: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &all {
            by_sandbox
                .entry(a.sandbox_id.clone())
                .or_default()
                .push(a.artifact_id.clone());
        }
        for (sandbox, ids) in by_sandbox {
            let Ok(id) = SandboxId::parse(&sandbox) else {
                continue;
            };
            if !matches!(self.get(&id), Ok(r) if r.status == SandboxStatus::Running) {
                continue;
            }
            let agent = AgentClient::new(self.agent_socket(&id));
            for art in ids {
                let path = format!("/artifacts/{art}");
                if let Err(e) = agent.request(Method::DELETE, &path, None, AGENT_IO).await {
                    tracing::warn!(session = %sid, artifact = %art, error = %e,
                        "cannot remove artifact file");
                }
            }
        }
        Ok(self.store.delete_session_artifacts(sid)?)
    }

    /// The session's sandbox if it exists and runs now.
    fn running_sandbox(&self, rec: &SessionRecord) -> Option<SandboxId> {
        let id = SandboxId::parse(rec.sandbox_id.as_deref()?).ok()?;
        matches!(self.get(&id), Ok(r) if r.status == SandboxStatus::Running).then_some(id)
    }

    /// The session's sandbox, running: resumed, started, or created if it is gone.
    async fn session_sandbox(
        self: &Arc<Self>,
        rec: &SessionRecord,
    ) -> Result<SandboxId, ManagerError> {
        if let Some(id) = rec
            .sandbox_id
            .as_deref()
            .and_then(|s| SandboxId::parse(s).ok())
        {
            match self.get(&id) {
                Ok(r) => {
                    match r.status {
                        SandboxStatus::Running | SandboxStatus::Creating => {}
                        SandboxStatus::Paused => {
                            self.resume(&id).await?;
                        }
                        SandboxStatus::Stopped => {
                            self.start(&id).await?;
                        }
                    }
                    return Ok(id);
                }
                Err(ManagerError::NotFound(_)) => {
                    tracing::info!(session = %rec.session_id, sandbox = %id,
                        "session's sandbox is gone; creating another");
                }
                Err(e) => return Err(e),
            }
        }
        let env: BTreeMap<String, String> = serde_json::from_str(&rec.env_vars).unwrap_or_default();
        let (sandbox, _token) = self
            .create(CreateRequest {
                template: rec.template.clone(),
                timeout_seconds: rec.timeout_seconds,
                internet_access: None,
                env_vars: env,
                vcpu: None,
                memory_mb: None,
                disk_mb: None,
            })
            .await?;
        self.store.set_session_sandbox(
            &rec.session_id,
            Some(sandbox.id.as_str()),
            true,
            Utc::now().timestamp(),
        )?;
        Ok(sandbox.id)
    }

    /// Makes sure the sandbox holds the session's latest state: a sandbox that has none gets
    /// the stored copy. A sandbox's own file is never older than the stored one (the store is
    /// updated from it after every execution), so an existing file is kept.
    async fn sync_state(&self, sandbox: &SandboxId, sid: &str) -> Result<(), ManagerError> {
        if self.sessions.is_synced(sandbox, sid) {
            return Ok(());
        }
        let agent = AgentClient::new(self.agent_socket(sandbox));
        let path = format!("/_hutch/sessions/{sid}/state");
        let (status, body) = agent
            .request(Method::GET, &path, None, AGENT_IO)
            .await
            .map_err(agent_error)?;
        if status == StatusCode::NOT_FOUND {
            if let Some(state) = self.store.session_state(sid)? {
                let (status, body) = agent
                    .request(Method::PUT, &path, Some(Bytes::from(state)), AGENT_IO)
                    .await
                    .map_err(agent_error)?;
                expect_ok(status, &body, "state upload")?;
            }
        } else {
            expect_ok(status, &body, "state check")?;
        }
        self.sessions.mark_synced(sandbox, sid);
        Ok(())
    }

    async fn fetch_state(&self, agent: &AgentClient, sid: &str) -> Result<Bytes, ManagerError> {
        let path = format!("/_hutch/sessions/{sid}/state");
        let (status, body) = agent
            .request(Method::GET, &path, None, AGENT_IO)
            .await
            .map_err(agent_error)?;
        expect_ok(status, &body, "state download")?;
        Ok(body)
    }
}

/// The session API's execution result, from the agent's.
fn execution_object(
    sid: &str,
    sandbox: &SandboxId,
    timeout: f64,
    run: AgentExecution,
) -> ExecutionObject {
    let exception = run.exception.as_ref();
    let mut error_type = exception
        .and_then(|e| e["name"].as_str())
        .map(str::to_string);
    let mut error = run.error.clone();
    if run.timed_out {
        error_type = Some("TimeoutError".into());
        error = Some(format!(
            "TimeoutError: execution timed out after {timeout} s"
        ));
    } else if !run.success && error_type.is_none() {
        error_type = Some("RuntimeError".into());
        error.get_or_insert_with(|| "RuntimeError: the execution failed".into());
    }
    let traceback = exception
        .and_then(|e| e["traceback"].as_array())
        .map(|lines| {
            lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        });
    ExecutionObject {
        success: run.success,
        error: if run.success { None } else { error },
        error_type: if run.success { None } else { error_type },
        traceback,
        stdout: run.stdout,
        stderr: run.stderr,
        execution_time: run.execution_time,
        timeout: timeout.ceil() as u64,
        artifacts: run.artifacts,
        cache_hit: run.cache_hit,
        execution_id: run.execution_id,
        session_id: sid.to_string(),
        sandbox_id: sandbox.to_string(),
        restored: run.restored,
        persisted: run.persisted,
        result: run.result,
        timed_out: run.timed_out,
    }
}
