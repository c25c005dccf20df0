//! The cloned child: it builds the sandbox and becomes its PID 1.
//!
//! It starts as real root in fresh mount, pid, uts, ipc, net and cgroup namespaces — all owned
//! by the host's user namespace — so it can assemble the root with ordinary mounts. Only then
//! does it enter a user namespace of its own (root inside maps to an unprivileged host uid),
//! drop capabilities, set no_new_privs and install seccomp. Sandbox root therefore cannot
//! unmount, remount or reconfigure anything it was given.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::channel::ChildEnd;
use super::intermediate::{Pid1Context, Pid1Entry};
use super::spawn::SpawnRequest;
use crate::{rootfs, security, sys};

/// Runs in the child; returns PID 1's exit code.
pub(super) fn child_main(
    req: SpawnRequest,
    chan: ChildEnd,
    listener: OwnedFd,
    log: OwnedFd,
    entry: Pid1Entry,
) -> i32 {
    sys::set_process_name("hutch:[init]");
    if let Err((step, error)) = setup(&req, &chan, &log) {
        chan.failed(step, &error);
        return 1;
    }
    if chan.ready().is_err() {
        return 1;
    }
    drop(log);
    entry(Pid1Context {
        sandbox_id: req.id,
        listener,
        boot: req.boot,
    })
}

fn setup(req: &SpawnRequest, chan: &ChildEnd, log: &OwnedFd) -> Result<(), (&'static str, String)> {
    let fail = |step: &'static str| move |e: &dyn std::fmt::Display| (step, e.to_string());
    redirect_stdio(log).map_err(|e| fail("stdio")(&e))?;
    chan.wait_network()
        .map_err(|e| fail("wait for network")(&e))?;
    rootfs::build(&req.rootfs).map_err(|e| fail("build root filesystem")(&error_chain(&e)))?;
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| fail("enter user namespace")(&e))?;
    chan.userns_created()
        .map_err(|e| fail("enter user namespace")(&e))?;
    chan.wait_maps()
        .map_err(|e| fail("wait for uid maps")(&e))?;
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    setresgid(root_gid, root_gid, root_gid).map_err(|e| fail("become root")(&e))?;
    setgroups(&[root_gid]).map_err(|e| fail("become root")(&e))?;
    setresuid(root_uid, root_uid, root_uid).map_err(|e| fail("become root")(&e))?;
    security::apply_sandbox_policy().map_err(|e| fail("confine")(&error_chain(&e)))?;
    Ok(())
}

/// stdin from /dev/null; stdout and stderr to the sandbox's log file on the host.
fn redirect_stdio(log: &OwnedFd) -> std::io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    sys::dup2(null.as_fd(), 0)?;
    sys::dup2(log.as_fd(), 1)?;
    sys::dup2(log.as_fd(), 2)
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
