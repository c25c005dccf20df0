//! The agent's shared state. Each part is owned by the module that implements its API.

use std::collections::BTreeMap;
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
    /// What the control plane said at start.
    pub boot: AgentBoot,
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
}

impl AgentState {
    /// Builds the state from the boot configuration.
    pub fn new(boot: AgentBoot) -> Self {
        Self {
            env: EnvStore::new(&boot),
            jobs: JobTable::new(&boot),
            metrics: Metrics::new(&boot),
            kernels: Kernels::new(&boot),
            started: Instant::now(),
            boot,
        }
    }

    /// The working directory for a request: its own if given, else the sandbox default.
    pub fn workdir(&self, requested: Option<&str>) -> String {
        match requested.map(str::trim) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ if !self.boot.workdir.is_empty() => self.boot.workdir.clone(),
            _ => "/workspace".into(),
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
