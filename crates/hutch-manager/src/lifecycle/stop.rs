//! Stopping: end every process, keep the files.

use hutch_store::SandboxRecord;
use hutch_types::{SandboxId, SandboxStatus, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Stops a running or paused sandbox.
    pub async fn stop(&self, id: &SandboxId) -> Result<SandboxRecord, ManagerError> {
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::Stop)?;
        let bid = id.clone();
        let grace = self.cfg.stop_grace;
        self.backend_op(move |b| b.stop(&bid, grace)).await?;
        self.store.set_status(id, SandboxStatus::Stopped)?;
        self.get(id)
    }
}
