//! The expiry reaper: deletes sandboxes whose `expires_at` has passed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::{Manager, ManagerError};

impl Manager {
    /// Deletes every expired sandbox once; returns how many went.
    pub async fn reap_expired(&self) -> Result<usize, ManagerError> {
        let now = Utc::now().timestamp();
        let _ = self.store.purge_expired_tokens(now);
        let mut n = 0;
        for id in self.store.expired_sandboxes(now)? {
            match self.delete(&id).await {
                Ok(()) => {
                    tracing::info!(sandbox = %id, "sandbox expired and was deleted");
                    n += 1;
                }
                Err(ManagerError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "cannot delete expired sandbox")
                }
            }
        }
        Ok(n)
    }

    /// Runs the reaper every `every` until the task is dropped.
    pub fn spawn_reaper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.reap_expired().await {
                    tracing::warn!(error = %e, "reaper pass failed");
                }
            }
        })
    }
}
