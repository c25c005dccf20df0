//! Setting the timeout: the sandbox now expires `timeout_seconds` from now.

use chrono::Utc;
use hutch_store::SandboxRecord;
use hutch_types::{SandboxId, Verb};

use crate::{Manager, ManagerError};

impl Manager {
    /// Moves the expiry to now + `timeout_seconds`.
    pub async fn set_timeout(
        &self,
        id: &SandboxId,
        timeout_seconds: i64,
    ) -> Result<SandboxRecord, ManagerError> {
        self.validate_timeout(Some(timeout_seconds))?;
        let _guard = self.lock(id).await;
        self.get_for(id, Verb::SetTimeout)?;
        let expires = Utc::now().timestamp() + timeout_seconds;
        self.store
            .set_timeout(id, Some(timeout_seconds), Some(expires))?;
        self.get(id)
    }
}
