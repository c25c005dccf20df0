//! The spawn worker: a single-threaded process that clones one sandbox's init.
//!
//! It exists because the server is multi-threaded, and a multi-threaded process must not clone
//! a child that then allocates, mounts and changes credentials. The spawner forks one worker per
//! request; the worker joins the sandbox's cgroups (so everything it clones is inside them from
//! the first instruction), binds the agent's socket on the host side, clones the init into new
//! namespaces, wires the network, writes the uid/gid maps when asked, and exits once the init
//! reports ready — leaving the init to the spawner, its reaper.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use super::channel::{self, ParentEnd};
use super::init;
use super::spawn::{self, NetworkRequest, SpawnReport, SpawnRequest, Started};
use crate::net;
use crate::sys::{self, Cloned};

/// What the sandbox's PID 1 is given.
pub struct Pid1Context {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The agent's listening socket (bound on the host side; the sandbox never sees its path).
    pub listener: OwnedFd,
    /// The opaque boot configuration from the sandbox spec.
    pub boot: serde_json::Value,
}

/// The function the sandbox's PID 1 runs after set-up; its return value is PID 1's exit code.
pub type Pid1Entry = fn(Pid1Context) -> i32;

/// A failure, with the step it happened at.
pub(super) struct StepError {
    step: String,
    message: String,
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> StepError {
    move |e| StepError {
        step: step.to_string(),
        message: e.to_string(),
    }
}

/// Runs one request; returns the report to send back.
pub(super) fn handle(req: SpawnRequest, entry: Pid1Entry) -> SpawnReport {
    match run(req, entry) {
        Ok(started) => SpawnReport::Ok(started),
        Err(e) => SpawnReport::Failed {
            step: e.step,
            message: e.message,
        },
    }
}

fn run(req: SpawnRequest, entry: Pid1Entry) -> Result<Started, StepError> {
    let me = std::process::id().to_string();
    for procs in &req.cgroup_procs {
        std::fs::write(procs, &me).map_err(|e| StepError {
            step: "join cgroup".into(),
            message: format!("{}: {e}", procs.display()),
        })?;
    }
    req.rootfs.validate().map_err(step("check paths"))?;
    let listener = bind_socket(&req.dir.join(spawn::SOCKET))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(req.dir.join(spawn::LOG))
        .map_err(step("open log"))?;
    let (parent, child) = channel::pair().map_err(step("socketpair"))?;

    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    match sys::clone_fork(flags).map_err(step("clone"))? {
        Cloned::Child => {
            drop(parent);
            // Nothing of the spawner's may reach the sandbox: keep only what the init needs.
            let keep = [listener.as_raw_fd(), child.raw_fd(), log.as_raw_fd()];
            sys::close_fds_except(&keep);
            let code = init::child_main(req, child, listener, log.into(), entry);
            // SAFETY: _exit ends this process without running the parent's atexit handlers or
            // flushing stdio buffers that were copied from it.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(code)
            }
        }
        Cloned::Parent(pid) => {
            drop(child);
            drop(listener);
            drop(log);
            let result = parent_side(&req, &parent, pid);
            if result.is_err() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = sys::wait_child(pid);
            }
            result
        }
    }
}

fn parent_side(req: &SpawnRequest, chan: &ParentEnd, pid: i32) -> Result<Started, StepError> {
    let lease = match &req.network {
        NetworkRequest::Loopback => {
            net::loopback_only(pid).map_err(step("network"))?;
            None
        }
        NetworkRequest::Internet { config, slot_hint } => {
            Some(net::attach_internet(config, pid, *slot_hint).map_err(step("network"))?)
        }
    };
    let release = |lease: &Option<net::NetLease>| {
        if let Some(l) = lease {
            let _ = net::release(&l.host_if);
        }
    };
    let result = (|| {
        chan.network_ready().map_err(step("signal network ready"))?;
        chan.wait_userns().map_err(child_step)?;
        let map = spawn::id_map(req.uid_base);
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{file}"), &map).map_err(step("write id map"))?;
        }
        chan.maps_written().map_err(step("signal maps written"))?;
        chan.wait_ready().map_err(child_step)?;
        let start_time = sys::process_start_time(pid).ok_or(StepError {
            step: "start".into(),
            message: "the sandbox init exited right after set-up; see agent.log".into(),
        })?;
        Ok(Started {
            pid,
            start_time,
            lease: lease.clone(),
        })
    })();
    if result.is_err() {
        release(&lease);
    }
    result
}

/// Maps a protocol error, keeping the child's own step name when it reported one.
fn child_step(e: channel::ChannelError) -> StepError {
    match e {
        channel::ChannelError::ChildFailed { step, error } => StepError {
            step,
            message: error,
        },
        other => StepError {
            step: "sandbox init".into(),
            message: other.to_string(),
        },
    }
}

fn bind_socket(path: &Path) -> Result<OwnedFd, StepError> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| StepError {
        step: "bind agent socket".into(),
        message: format!("{}: {e}", path.display()),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(step("bind agent socket"))?;
    Ok(listener.into())
}
