//! The backend's own record of a sandbox, `state.json` in its directory, so a restarted server
//! (or `hutch bench`) finds what it needs without the control plane's database.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::SandboxSpec;
use crate::error::RuntimeError;
use crate::net::NetLease;

pub(super) const FILE: &str = "state.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateFile {
    pub spec: SandboxSpec,
    /// Present while processes exist (running or paused).
    pub process: Option<ProcessRecord>,
}

/// The sandbox's PID 1 as the host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ProcessRecord {
    pub pid: i32,
    /// With `pid`, identifies the process across pid reuse.
    pub start_time: u64,
    pub lease: Option<NetLease>,
    /// The sandbox's cgroup directories, recorded at start. They are named after the id the
    /// processes were started under (cgroup v2 cannot rename, so a sandbox adopted from the warm
    /// pool keeps its placeholder's groups), and they sit below the *creating* server's own
    /// memory group, which another process need not share.
    #[serde(default)]
    pub cgroup_dirs: Vec<std::path::PathBuf>,
}

impl StateFile {
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(FILE);
        let bytes = fs::read(&path).map_err(RuntimeError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::State { path, source })
    }

    /// Writes atomically (temp file + rename), so a crash never leaves half a state file.
    pub fn save(&self, dir: &Path) -> Result<(), RuntimeError> {
        let path = dir.join(FILE);
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| RuntimeError::State {
            path: path.clone(),
            source,
        })?;
        let mut f = fs::File::create(&tmp).map_err(RuntimeError::io("create", &tmp))?;
        f.write_all(&bytes)
            .map_err(RuntimeError::io("write", &tmp))?;
        f.sync_data().map_err(RuntimeError::io("sync", &tmp))?;
        fs::rename(&tmp, &path).map_err(RuntimeError::io("rename", &path))
    }
}
