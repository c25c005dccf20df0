//! Sessions inside the sandbox: a named Python context whose state is saved to a file after
//! every successful cell and restored into a fresh kernel (after a restart, a stop/start, or in
//! a new sandbox the control plane copied the file into).
//!
//! The file is written and read only by the kernel (`python_kernel.py`: `_session_restore`,
//! `_session_persist`); the agent and the control plane move it around as opaque bytes, so
//! nothing outside the sandbox ever unpickles user data.

use std::path::PathBuf;

/// Where session state files live: the agent's private directory, outside `/workspace`, so a
/// user listing or cleaning the workspace does not trip over them.
const STATE_DIR: &str = "/var/lib/hutch-agent/sessions";

/// The session's context id.
pub fn context_id(sid: &str) -> String {
    format!("session-{sid}")
}

/// The session's state file. `sid` was validated (`hutch_types::SessionId`): no `/` or `..`.
pub fn state_path(sid: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("{sid}.state"))
}

/// The saved state, if any (blocking).
pub fn read_state(sid: &str) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(state_path(sid)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the saved state atomically (blocking).
pub fn write_state(sid: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(STATE_DIR)?;
    let path = state_path(sid);
    let tmp = path.with_extension(format!("state.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

/// Removes the saved state; none is fine (blocking).
pub fn delete_state(sid: &str) -> std::io::Result<()> {
    match std::fs::remove_file(state_path(sid)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
