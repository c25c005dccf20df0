//! The server side of starting a sandbox: describe it, run the helper, read its report.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spawner::SpawnerClient;
use super::{NativeConfig, UID_COUNT};
use crate::backend::SandboxSpec;
use crate::cgroup::SandboxCgroup;
use crate::error::RuntimeError;
use crate::net::{NetConfig, NetLease};
use crate::rootfs::RootfsPlan;

/// The agent's socket, in the sandbox's directory on the host.
pub(super) const SOCKET: &str = "agent.sock";
/// PID 1's and the agent's stderr.
pub(super) const LOG: &str = "agent.log";

/// What the helper is asked to do (JSON on its stdin).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SpawnRequest {
    pub id: String,
    pub dir: PathBuf,
    pub rootfs: RootfsPlan,
    pub uid_base: u32,
    pub cgroup_procs: Vec<PathBuf>,
    pub network: NetworkRequest,
    pub boot: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum NetworkRequest {
    Loopback,
    Internet { config: NetConfig, slot_hint: u32 },
}

/// What the helper answers (one JSON object on its stdout).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum SpawnReport {
    Ok(Started),
    Failed { step: String, message: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Started {
    pub pid: i32,
    pub start_time: u64,
    pub lease: Option<NetLease>,
}

pub(super) fn request(
    cfg: &NativeConfig,
    dir: &Path,
    spec: &SandboxSpec,
    group: &SandboxCgroup,
) -> SpawnRequest {
    let network = if spec.internet {
        NetworkRequest::Internet {
            config: cfg.net.clone(),
            slot_hint: slot_hint(spec.id.as_str()),
        }
    } else {
        NetworkRequest::Loopback
    };
    SpawnRequest {
        id: spec.id.to_string(),
        dir: dir.to_path_buf(),
        rootfs: RootfsPlan {
            merged: dir.join("merged"),
            lower: spec.template.layers.clone(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            binds: spec.template.binds.clone(),
            hostname: "sandbox".into(),
        },
        uid_base: cfg.uid_base,
        cgroup_procs: group.procs_files(),
        network,
        boot: spec.boot.clone(),
    }
}

/// Spreads slot choices so concurrent creates rarely collide on their first try.
pub(super) fn slot_hint(id: &str) -> u32 {
    id.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    })
}

pub(super) fn run_helper(
    spawner: &SpawnerClient,
    req: SpawnRequest,
) -> Result<Started, RuntimeError> {
    match spawner.spawn(req)? {
        SpawnReport::Ok(started) => Ok(started),
        SpawnReport::Failed { step, message } => Err(RuntimeError::Setup { step, message }),
    }
}

/// Bytes of uid_map/gid_map content for a sandbox.
pub(super) fn id_map(uid_base: u32) -> String {
    format!("0 {uid_base} {UID_COUNT}\n")
}
