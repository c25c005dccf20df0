//! Pausing: freeze every process of a running sandbox (0 CPU; memory kept).

use hutch_store::SandboxRecord;
use hutch_types::{SandboxId, SandboxStatus, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Freezes a running sandbox.
    pub async fn pause(&self, id: &SandboxId) -> Result<SandboxRecord, ManagerError> {
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::Pause)?;
        let bid = id.clone();
        self.backend_op(move |b| b.pause(&bid)).await?;
        self.store.set_status(id, SandboxStatus::Paused)?;
        self.get(id)
    }
}
