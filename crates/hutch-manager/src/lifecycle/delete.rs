//! Deleting (HopX "kill"): remove processes, cgroups, network, files, tokens and the record.

use hutch_runtime::RuntimeError;
use hutch_types::{SandboxId, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Removes a sandbox completely.
    pub async fn delete(&self, id: &SandboxId) -> Result<(), ManagerError> {
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::Delete)?;
        let bid = id.clone();
        match self.backend_op(move |b| b.kill(&bid)).await {
            Ok(()) | Err(ManagerError::Runtime(RuntimeError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
        self.store.delete_sandbox(id)?;
        self.forget_lock(id);
        tracing::info!(sandbox = %id, "sandbox deleted");
        Ok(())
    }
}
