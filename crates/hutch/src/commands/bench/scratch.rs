//! A benchmark's private data directory and spawner, removed whatever happens.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use hutch_runtime::{Backend, NativeBackend};

use crate::setup;

/// Removes every sandbox of a backend and stops its spawner when dropped.
pub struct SpawnerGuard(pub Arc<NativeBackend>);

impl Drop for SpawnerGuard {
    fn drop(&mut self) {
        if let Ok(ids) = self.0.list() {
            for id in ids {
                let _ = self.0.kill(&id);
            }
        }
        let _ = self.0.shutdown_spawner();
    }
}

/// A data directory removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh data directory under the system temp dir.
pub fn tempdir(tag: &str) -> Result<TempDir> {
    let path = std::env::temp_dir().join(format!("hutch-bench-{tag}-{}", std::process::id()));
    setup::data_dir(&path)?;
    Ok(TempDir { path })
}
