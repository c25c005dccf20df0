//! The warm pool: a few sandboxes of the built-in template, created ahead of demand.
//!
//! A cold create pays for cgroup migration (the kernel waits out an RCU grace period, ~10 ms
//! here), the clone and mounts, and the agent's start. A warm sandbox has paid all of that
//! already: creating from the pool only renames its directory, rewrites its limits, attaches
//! its network if it needs one and tells its agent who it now is (`Backend::adopt`). The pool is
//! refilled in the background, one sandbox at a time, so a burst of creates drains it and then
//! falls back to cold creates rather than competing with them.
//!
//! Warm sandboxes have no database record; a restarted server removes any it finds on disk
//! (`recover`) before filling a fresh pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutch_runtime::{SandboxSpec, TemplateRootfs};
use hutch_types::{AgentBoot, SandboxId};
use rand::Rng;

use crate::Manager;

/// Id prefix of warm sandboxes, so recovery and listings can tell them apart.
pub const WARM_PREFIX: &str = "warm-";

/// Warm sandboxes ready to be adopted.
#[derive(Default)]
pub(crate) struct Pool {
    ready: Mutex<Vec<SandboxId>>,
    refilling: AtomicBool,
}

impl Pool {
    fn len(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Manager {
    /// The template root warm sandboxes are made of: the built-in one.
    fn pool_rootfs(&self) -> Option<&TemplateRootfs> {
        self.templates.builtins().first().map(|t| &t.rootfs)
    }

    /// Takes a warm sandbox made of `rootfs`, if one is ready, and starts a refill.
    pub(crate) fn take_warm(self: &Arc<Self>, rootfs: &TemplateRootfs) -> Option<SandboxId> {
        if self.pool_rootfs() != Some(rootfs) {
            return None;
        }
        let id = self
            .pool
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        self.refill_pool();
        id
    }

    /// Number of warm sandboxes ready now.
    pub fn warm_count(&self) -> usize {
        self.pool.len()
    }

    /// Starts filling the pool up to the configured size in the background (once at a time).
    pub fn refill_pool(self: &Arc<Self>) {
        if self.cfg.pool_size == 0 || self.pool.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            while me.pool.len() < me.cfg.pool_size {
                match me.create_warm().await {
                    Ok(id) => me
                        .pool
                        .ready
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create a warm sandbox; retrying later");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
            me.pool.refilling.store(false, Ordering::SeqCst);
        });
    }

    async fn create_warm(&self) -> Result<SandboxId, crate::ManagerError> {
        let rootfs = self
            .pool_rootfs()
            .cloned()
            .ok_or_else(|| crate::ManagerError::Invalid("no built-in template".into()))?;
        let id = SandboxId::parse(&format!(
            "{WARM_PREFIX}{}",
            SandboxId::generate(|| rand::thread_rng().gen())
        ))
        .map_err(|e| crate::ManagerError::Invalid(e.to_string()))?;
        let boot = AgentBoot {
            sandbox_id: id.to_string(),
            ..AgentBoot::default()
        };
        let spec = SandboxSpec {
            id: id.clone(),
            template: rootfs,
            resources: self.cfg.default_resources,
            internet: false,
            boot: serde_json::to_value(&boot).unwrap_or_default(),
        };
        self.backend_op(move |b| b.create(&spec)).await?;
        if let Err(e) = self.wait_ready(&id).await {
            let kid = id.clone();
            let _ = self.backend_op(move |b| b.kill(&kid)).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Removes every warm sandbox (shutdown of tests; `recover` handles restarts).
    pub async fn drain_pool(&self) {
        let ids: Vec<SandboxId> =
            std::mem::take(&mut *self.pool.ready.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            let _ = self.backend_op(move |b| b.kill(&id)).await;
        }
    }
}
