//! Start-up reconciliation: make the records and the sandboxes on disk agree again after a
//! restart or crash, without losing a sandbox that still has its files.

use hutch_runtime::RuntimeStatus;
use hutch_types::SandboxStatus;

use crate::{Manager, ManagerError};

/// What reconciliation did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Sandboxes found running as recorded.
    pub running: usize,
    /// Sandboxes restarted because their processes were gone.
    pub restarted: usize,
    /// Records or leftovers removed.
    pub removed: usize,
}

impl Manager {
    /// Reconciles every record with the backend. Call once at start, before serving.
    pub async fn recover(&self) -> Result<Recovered, ManagerError> {
        let mut out = Recovered::default();
        let records = self.store.all_sandboxes()?;
        let on_disk = self.backend_op(|b| b.list()).await?;
        for r in &records {
            let id = r.id.clone();
            let bid = id.clone();
            let actual = match self.backend_op(move |b| b.status(&bid)).await {
                Ok(s) => Some(s),
                Err(ManagerError::Runtime(hutch_runtime::RuntimeError::NotFound(_))) => None,
                Err(e) => return Err(e),
            };
            match (r.status, actual) {
                // The files are gone: the record is all that is left.
                (_, None) => {
                    self.store.delete_sandbox(&id)?;
                    out.removed += 1;
                }
                // A create that never finished.
                (SandboxStatus::Creating, Some(_)) => {
                    let bid = id.clone();
                    let _ = self.backend_op(move |b| b.kill(&bid)).await;
                    self.store.delete_sandbox(&id)?;
                    out.removed += 1;
                }
                (SandboxStatus::Running, Some(RuntimeStatus::Running))
                | (SandboxStatus::Paused, Some(RuntimeStatus::Paused))
                | (SandboxStatus::Stopped, Some(RuntimeStatus::Stopped)) => out.running += 1,
                // Processes gone (host reboot, killed PID 1): start it again with its files.
                (SandboxStatus::Running, Some(RuntimeStatus::Stopped)) => {
                    let bid = id.clone();
                    match self.backend_op(move |b| b.start(&bid)).await {
                        Ok(()) => out.restarted += 1,
                        Err(e) => {
                            tracing::warn!(sandbox = %id, error = %e, "cannot restart; marking stopped");
                            self.store.set_status(&id, SandboxStatus::Stopped)?;
                        }
                    }
                }
                // Memory of a paused sandbox is gone with its processes.
                (SandboxStatus::Paused, Some(RuntimeStatus::Stopped)) => {
                    self.store.set_status(&id, SandboxStatus::Stopped)?;
                }
                (_, Some(actual)) => {
                    // The runtime is ahead of the record (a crash between act and persist):
                    // believe the runtime.
                    let status = match actual {
                        RuntimeStatus::Running => SandboxStatus::Running,
                        RuntimeStatus::Paused => SandboxStatus::Paused,
                        RuntimeStatus::Stopped => SandboxStatus::Stopped,
                    };
                    self.store.set_status(&id, status)?;
                }
            }
        }
        // Sandboxes on disk without a record: leftovers of a delete interrupted midway.
        for id in on_disk {
            if !records.iter().any(|r| r.id == id) {
                let bid = id.clone();
                let _ = self.backend_op(move |b| b.kill(&bid)).await;
                out.removed += 1;
            }
        }
        // After the sandboxes: a build sandbox left by an interrupted build is gone by now, so
        // its build's staging root can go too.
        self.recover_templates().await?;
        Ok(out)
    }
}
