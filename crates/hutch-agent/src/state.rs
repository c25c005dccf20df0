//! The agent's shared state: boot configuration, the sandbox environment, confinement.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Instant;

use hutch_types::AgentBoot;

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
    pub env: RwLock<BTreeMap<String, String>>,
}

impl AgentState {
    /// Builds the state from the boot configuration.
    pub fn new(boot: AgentBoot) -> Self {
        let env = RwLock::new(boot.env_vars.clone());
        Self {
            boot,
            started: Instant::now(),
            env,
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
        let custom = self.env.read().unwrap_or_else(|e| e.into_inner());
        env.extend(custom.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(o) = overrides {
            env.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env.into_iter().collect()
    }
}
