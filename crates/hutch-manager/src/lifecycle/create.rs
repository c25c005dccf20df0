//! Creating a sandbox: validate, record as `creating`, start it, wait for its agent, mark it
//! `running`, issue its first token. Any failure undoes every earlier step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hutch_client::AgentClient;
use hutch_runtime::SandboxSpec;
use hutch_store::SandboxRecord;
use hutch_types::{AgentBoot, Resources, SandboxId, SandboxStatus};
use rand::Rng;

use crate::{IssuedToken, Manager, ManagerError};

/// What a create call asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Template name or id.
    pub template: String,
    /// Auto-kill delay in seconds; None = never.
    pub timeout_seconds: Option<i64>,
    /// Internet access (default true, as in HopX).
    pub internet_access: Option<bool>,
    /// Environment variables for every process.
    pub env_vars: BTreeMap<String, String>,
    /// CPU override.
    pub vcpu: Option<u32>,
    /// Memory override, MiB.
    pub memory_mb: Option<u64>,
    /// Disk override, MiB.
    pub disk_mb: Option<u64>,
}

/// Longest environment variable value accepted (bytes).
const MAX_ENV_VALUE: usize = 128 * 1024;
/// Most environment variables accepted.
const MAX_ENV_VARS: usize = 1024;

/// Checks an environment variable map: POSIX names, no NUL bytes, bounded sizes.
pub(crate) fn validate_env(env: &BTreeMap<String, String>) -> Result<(), ManagerError> {
    if env.len() > MAX_ENV_VARS {
        return Err(ManagerError::Invalid(format!(
            "too many environment variables ({} > {MAX_ENV_VARS})",
            env.len()
        )));
    }
    for (k, v) in env {
        let ok = !k.is_empty()
            && k.len() <= 256
            && k.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(ManagerError::Invalid(format!(
                "invalid environment variable name {k:?}: use letters, digits and '_', not \
                 starting with a digit"
            )));
        }
        if v.contains('\0') || v.len() > MAX_ENV_VALUE {
            return Err(ManagerError::Invalid(format!(
                "invalid value for environment variable {k}: no NUL bytes, at most \
                 {MAX_ENV_VALUE} bytes"
            )));
        }
    }
    Ok(())
}

impl Manager {
    /// Checks a `timeout_seconds` value.
    pub(crate) fn validate_timeout(&self, t: Option<i64>) -> Result<(), ManagerError> {
        match t {
            Some(t) if t < 1 || t > self.cfg.max_timeout.as_secs() as i64 => {
                Err(ManagerError::Invalid(format!(
                    "timeout_seconds must be between 1 and {}, got {t}",
                    self.cfg.max_timeout.as_secs()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Creates and starts a sandbox; returns its record and first token.
    pub async fn create(
        self: &Arc<Self>,
        req: CreateRequest,
    ) -> Result<(SandboxRecord, IssuedToken), ManagerError> {
        let template = self
            .templates
            .find(&req.template)
            .ok_or_else(|| ManagerError::TemplateNotFound(req.template.clone()))?;
        if !template.is_active() {
            return Err(ManagerError::Invalid(format!(
                "template {:?} is {}: sandboxes can be created once a build succeeds",
                template.name,
                template.status.as_str()
            )));
        }
        let defaults = template.default_resources;
        let resources = Resources {
            vcpu: req.vcpu.unwrap_or(defaults.vcpu),
            memory_mb: req.memory_mb.unwrap_or(defaults.memory_mb),
            disk_mb: req.disk_mb.unwrap_or(defaults.disk_mb),
            pids: defaults.pids,
        };
        resources
            .validate(self.cfg.host_cpus, self.cfg.host_memory_mb)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
        self.validate_timeout(req.timeout_seconds)?;
        validate_env(&req.env_vars)?;

        let now = Utc::now().timestamp();
        let id = SandboxId::generate(|| rand::thread_rng().gen());
        let record = SandboxRecord {
            id: id.clone(),
            status: SandboxStatus::Creating,
            template_name: template.name.clone(),
            template_id: template.id.clone(),
            created_at: now,
            timeout_seconds: req.timeout_seconds,
            expires_at: req.timeout_seconds.map(|t| now + t),
            internet_access: req.internet_access.unwrap_or(true),
            env_vars: req.env_vars,
            resources,
        };
        let _guard = self.lock(&id).await;
        self.store.insert_sandbox(&record)?;

        // The template's environment, then the request's on top.
        let mut env_vars = template.env.clone();
        env_vars.extend(record.env_vars.clone());
        let boot = AgentBoot {
            sandbox_id: id.to_string(),
            template: template.name.clone(),
            env_vars,
            resources: Some(resources),
            workdir: template
                .workdir
                .clone()
                .unwrap_or_else(|| "/workspace".into()),
        };
        let spec = SandboxSpec {
            id: id.clone(),
            template: template.rootfs.clone(),
            resources,
            internet: record.internet_access,
            boot: serde_json::to_value(&boot).unwrap_or_default(),
        };
        let ready = match self.take_warm(&spec.template) {
            Some(warm) => match self.adopt_warm(&warm, &spec, &boot).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "warm sandbox unusable; creating cold");
                    let _ = self.backend_op(move |b| b.kill(&warm)).await;
                    self.create_cold(spec).await
                }
            },
            None => self.create_cold(spec).await,
        };
        if let Err(e) = ready {
            let kill_id = id.clone();
            let _ = self.backend_op(move |b| b.kill(&kill_id)).await;
            let _ = self.store.delete_sandbox(&id);
            self.forget_lock(&id);
            return Err(e);
        }
        self.store.set_status(&id, SandboxStatus::Running)?;
        if let Some(cmd) = &template.start_cmd {
            self.launch_start_cmd(&id, cmd).await;
        }
        let token = self.issue_token(&id)?;
        let record = self.get(&id)?;
        tracing::info!(sandbox = %id, template = %template.name, "sandbox created");
        Ok((record, token))
    }

    async fn create_cold(&self, spec: SandboxSpec) -> Result<(), ManagerError> {
        let id = spec.id.clone();
        self.backend_op(move |b| b.create(&spec)).await?;
        self.wait_ready(&id).await
    }

    /// Turns a warm sandbox into `spec` and tells its agent its new boot configuration.
    async fn adopt_warm(
        &self,
        warm: &SandboxId,
        spec: &SandboxSpec,
        boot: &AgentBoot,
    ) -> Result<(), ManagerError> {
        let (w, s) = (warm.clone(), spec.clone());
        self.backend_op(move |b| b.adopt(&w, &s)).await?;
        let client = AgentClient::new(self.backend.agent_socket(&spec.id));
        let body = serde_json::to_vec(boot).map_err(|e| ManagerError::Task(e.to_string()))?;
        let (status, text) = client
            .request(
                hutch_client::Method::POST,
                "/_hutch/boot",
                Some(body.into()),
                self.cfg.ready_timeout,
            )
            .await
            .map_err(|e| ManagerError::AgentNotReady(e.to_string()))?;
        if !status.is_success() {
            return Err(ManagerError::AgentNotReady(format!(
                "boot update answered {status}: {}",
                String::from_utf8_lossy(&text)
            )));
        }
        Ok(())
    }

    /// Starts a template's start command as a background job of the new sandbox. A failure is
    /// logged, not fatal: the sandbox itself works, and the job list shows what ran.
    async fn launch_start_cmd(&self, id: &SandboxId, cmd: &str) {
        let client = AgentClient::new(self.backend.agent_socket(id));
        let body = serde_json::json!({
            "command": cmd,
            "name": "start_cmd",
            // The agent's longest job timeout: a start command is usually a server.
            "timeout": 7 * 24 * 3600,
        });
        match client
            .request(
                hutch_client::Method::POST,
                "/commands/background",
                Some(body.to_string().into()),
                self.cfg.ready_timeout,
            )
            .await
        {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, text)) => tracing::warn!(
                sandbox = %id,
                "start command refused ({status}): {}",
                String::from_utf8_lossy(&text)
            ),
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "cannot start the start command"),
        }
    }

    /// Waits until the sandbox's agent answers `/health`.
    pub(crate) async fn wait_ready(&self, id: &SandboxId) -> Result<(), ManagerError> {
        let client = AgentClient::new(self.backend.agent_socket(id));
        let deadline = tokio::time::Instant::now() + self.cfg.ready_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match client.health(left.max(Duration::from_millis(10))).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(ManagerError::AgentNotReady(e.to_string()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        let ok: BTreeMap<_, _> = [("A_1".to_string(), "x".to_string())].into();
        validate_env(&ok).unwrap();
        for bad in ["", "1A", "A-B", "A=B", "A B"] {
            let env: BTreeMap<_, _> = [(bad.to_string(), "x".to_string())].into();
            assert!(validate_env(&env).is_err(), "{bad:?}");
        }
        let env: BTreeMap<_, _> = [("A".to_string(), "a\0b".to_string())].into();
        assert!(validate_env(&env).is_err());
    }
}
