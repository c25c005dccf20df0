//! Resuming: thaw a paused sandbox exactly where it stopped.

use hutch_store::SandboxRecord;
use hutch_types::{SandboxId, SandboxStatus, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Thaws a paused sandbox.
    pub async fn resume(&self, id: &SandboxId) -> Result<SandboxRecord, ManagerError> {
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::Resume)?;
        let bid = id.clone();
        self.backend_op(move |b| b.resume(&bid)).await?;
        self.store.set_status(id, SandboxStatus::Running)?;
        self.get(id)
    }
}
