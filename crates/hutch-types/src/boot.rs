//! What the control plane tells a sandbox's agent at every start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Resources;

/// Start-up configuration handed to the agent (through the runtime, which treats it as opaque).
/// Also the body of the agent's internal `POST /_hutch/boot`, hence the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentBoot {
    /// The sandbox id, reported by `/info` and used as `vm_id`.
    pub sandbox_id: String,
    /// The template the sandbox was created from.
    pub template: String,
    /// Environment variables given at create time; the agent's `/env` API changes them later.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// The sandbox's limits, for `/info` and metrics.
    pub resources: Option<Resources>,
    /// Working directory for commands and code when a request names none.
    #[serde(default = "default_workdir")]
    pub workdir: String,
}

fn default_workdir() -> String {
    "/workspace".into()
}

impl Default for AgentBoot {
    fn default() -> Self {
        Self {
            sandbox_id: String::new(),
            template: String::new(),
            env_vars: BTreeMap::new(),
            resources: None,
            workdir: default_workdir(),
        }
    }
}
