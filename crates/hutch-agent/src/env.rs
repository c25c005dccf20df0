//! The sandbox's custom environment variables: create-time `env_vars`, changed by the `/env` API,
//! seen by every later execution, command, background job and terminal.

use std::collections::BTreeMap;
use std::sync::RwLock;

use hutch_types::AgentBoot;

/// The custom variables.
pub struct EnvStore {
    vars: RwLock<BTreeMap<String, String>>,
}

impl EnvStore {
    /// Starts from the create-time variables.
    pub fn new(boot: &AgentBoot) -> Self {
        Self {
            vars: RwLock::new(boot.env_vars.clone()),
        }
    }

    /// A copy of the current variables.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.vars.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
