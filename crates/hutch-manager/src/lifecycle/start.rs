//! Starting: bring a stopped sandbox back with the files it had.

use hutch_store::SandboxRecord;
use hutch_types::{SandboxId, SandboxStatus, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Starts a stopped sandbox and waits for its agent.
    pub async fn start(&self, id: &SandboxId) -> Result<SandboxRecord, ManagerError> {
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::Start)?;
        let bid = id.clone();
        self.backend_op(move |b| b.start(&bid)).await?;
        if let Err(e) = self.wait_ready(id).await {
            let bid = id.clone();
            let _ = self
                .backend_op(move |b| b.stop(&bid, std::time::Duration::ZERO))
                .await;
            return Err(e);
        }
        self.store.set_status(id, SandboxStatus::Running)?;
        self.get(id)
    }
}
