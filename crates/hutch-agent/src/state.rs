//! The agent's shared state. Each part is owned by the module that implements its API.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Instant;

use hutch_types::AgentBoot;

use crate::env::EnvStore;
use crate::kernels::Kernels;
use crate::metrics::Metrics;
use crate::process::JobTable;

/// The environment every sandbox process starts from, before the sandbox's own variables.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("SHELL", "/bin/bash"),
    ("LANG", "C.UTF-8"),
    ("HOSTNAME", "sandbox"),
    ("PYTHONUNBUFFERED", "1"),
];

/// Shared by every request handler.
pub struct AgentState {
    /// What the control plane said at start, or later when the sandbox was adopted from the warm
    /// pool under a new identity (`POST /_hutch/boot`).
    boot: RwLock<AgentBoot>,
    /// When this agent process started.
    pub started: Instant,
    /// The sandbox's custom environment variables (create-time `env_vars` and the `/env` API).
    pub env: EnvStore,
    /// Background processes started through the API.
    pub jobs: JobTable,
    /// Request counters and timings.
    pub metrics: Metrics,
    /// Code interpreters, their contexts, caches and history.
    pub kernels: Kernels,
    /// Files executions produced.
    pub artifacts: std::sync::Arc<crate::artifacts::Artifacts>,
}

impl AgentState {
    /// Builds the state from the boot configuration.
    pub fn new(boot: AgentBoot) -> Self {
        Self {
            env: EnvStore::new(&boot),
            jobs: JobTable::new(&boot),
            metrics: Metrics::new(&boot),
            kernels: Kernels::new(&boot),
            artifacts: std::sync::Arc::new(crate::artifacts::Artifacts::load()),
            started: Instant::now(),
            boot: RwLock::new(boot),
        }
    }

    /// The current boot configuration.
    pub fn boot(&self) -> AgentBoot {
        self.boot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes a new identity: the boot configuration, its environment and limits. Blocking (the
    /// environment is saved to disk).
    pub fn reboot(&self, boot: AgentBoot) -> Result<(), crate::env::EnvError> {
        self.env.replace(boot.env_vars.clone())?;
        self.metrics.set_resources(boot.resources);
        *self.boot.write().unwrap_or_else(|e| e.into_inner()) = boot;
        Ok(())
    }

    /// The working directory for a request: its own if given, else the sandbox default.
    pub fn workdir(&self, requested: Option<&str>) -> String {
        match requested.map(str::trim) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => {
                let w = self.boot().workdir;
                if w.is_empty() {
                    "/workspace".into()
                } else {
                    w
                }
            }
        }
    }

    /// Base environment + sandbox variables + per-request overrides, in that priority order.
    pub fn environment(
        &self,
        overrides: Option<&BTreeMap<String, String>>,
    ) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BASE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend(self.env.snapshot());
        if let Some(o) = overrides {
            env.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env.into_iter().collect()
    }
}
