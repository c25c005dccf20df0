//! Getting a netlink socket that talks to a sandbox's network namespace.
//!
//! A netlink socket is tied to the netns that was current when it was created, so the only
//! thing that has to happen *inside* the sandbox namespace is `socket(2)`: switch the calling
//! thread in, open the socket, switch straight back, then do all the configuration from home.
//! That keeps the time spent in a foreign namespace to two syscalls and means no other code
//! (logging, allocation, error paths) ever runs with the thread in the wrong namespace.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

use super::nl::Rtnl;
use super::NetError;

/// Opens `/proc/<pid>/ns/net`. Holding this fd pins the namespace, and later steps use the fd
/// rather than the pid, so a pid that exits and gets reused mid-setup cannot redirect them.
pub(super) fn open_netns(pid: i32) -> Result<File, NetError> {
    if pid <= 0 {
        return Err(NetError::InvalidPid { pid });
    }
    File::open(format!("/proc/{pid}/ns/net")).map_err(|source| NetError::NetnsOpen { pid, source })
}

/// Opens an rtnetlink socket inside the netns `target` (which belongs to `pid`, used for error
/// messages only) and returns the calling thread to its original netns before returning,
/// whatever happened.
pub(super) fn rtnl_in(target: &File, pid: i32) -> Result<Rtnl, NetError> {
    // thread-self, not self: setns(2) moves only the calling thread, so "home" is this thread's
    // namespace, which need not be the one of the process's main thread.
    let home = File::open("/proc/thread-self/ns/net").map_err(NetError::NetnsSave)?;
    setns(target, CloneFlags::CLONE_NEWNET)
        .map_err(|source| NetError::NetnsEnter { pid, source })?;
    let sock = Rtnl::open();
    // Must run on every path after the successful setns above; nothing between can return early.
    setns(&home, CloneFlags::CLONE_NEWNET).map_err(NetError::NetnsRestore)?;
    sock.map_err(NetError::NetlinkSocket)
}

/// Runs `f` on a fresh, short-lived thread that has joined the netns `target` (of `pid`, used
/// for error messages only) and returns what `f` returned.
///
/// A thread of its own rather than switch-and-return on the caller's: `f` may block (a TCP
/// connect waits for the peer), and a thread that only ever lives in the sandbox's namespace
/// cannot strand the caller there if switching back failed. Sockets created by `f` stay bound
/// to the sandbox's namespace after the thread is gone. Not for the single-threaded helper that
/// later `clone()`s a sandbox: this starts a thread (and joins it before returning).
pub(super) fn run_in<T, F>(target: File, pid: i32, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let worker = std::thread::Builder::new()
        .name("hutch-netns".into())
        .spawn(move || -> Result<T, NetError> {
            setns(&target, CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetError::NetnsEnter { pid, source })?;
            Ok(f())
        })
        .map_err(NetError::NetnsThread)?;
    worker
        .join()
        .map_err(|_| NetError::NetnsThread(std::io::Error::other("namespace thread panicked")))?
}
