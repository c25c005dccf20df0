//! The few raw syscalls the native runtime makes that `nix` does not wrap the way we need.
//!
//! Everything else goes through `nix`. Each function documents when it may be called.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// What `clone` returned.
pub enum Cloned {
    /// We are the new process.
    Child,
    /// We are the caller; this is the child's pid.
    Parent(i32),
}

/// `clone(flags | SIGCHLD)` with fork semantics (the child runs on a copy of our stack).
///
/// Only call from a single-threaded process: the child gets a copy of the address space with no
/// other threads, so any lock another thread held would stay locked forever.
#[allow(unsafe_code)]
pub fn clone_fork(flags: libc::c_int) -> io::Result<Cloned> {
    // SAFETY: the raw clone syscall with a null stack behaves like fork(2): the child continues
    // on a copy-on-write copy of the caller's stack. The other pointer arguments (parent/child
    // tid, tls) are null and unused because no CLONE_*TID/CLONE_SETTLS flag is passed. The
    // caller guarantees the process is single-threaded (see above).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent(pid as i32)),
    }
}

/// Sets the calling thread's name as `ps` and `/proc/PID/comm` show it (max 15 bytes).
pub fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from the pointer;
    // `buf` is 16 bytes and its last byte is always 0.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Marks the process non-dumpable: no core dumps, and `/proc/PID/*` and ptrace need
/// CAP_SYS_PTRACE, which sandbox processes do not have.
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    #[allow(unsafe_code)]
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process a child subreaper: orphaned descendants are re-parented to it instead of
/// the host's PID 1, so the server can reap sandbox init processes after the helper that cloned
/// them exits (this host's PID 1 never reaps orphans).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory of ours.
    #[allow(unsafe_code)]
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `wait` until the process `pid` that started at `start_time` is gone — exited and
/// reaped by its parent (the spawner) — so a finished kill leaves no process entry behind.
pub fn wait_gone(pid: i32, start_time: u64, wait: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if process_start_time(pid) != Some(start_time) {
            return true;
        }
        if start.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Waits (blocking) for our child `pid` and returns its raw wait status.
pub fn wait_child(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: as in `reap`; `status` is a valid out-pointer.
        #[allow(unsafe_code)]
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(status);
    }
}

/// `dup2(fd, target)`: puts an open file at a fixed descriptor number (stdio set-up).
pub fn dup2(fd: BorrowedFd<'_>, target: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `fd` is a live descriptor borrowed for
    // the call, and replacing `target` is the intent.
    #[allow(unsafe_code)]
    let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor except stdio and `keep`, so nothing a parent had open leaks into a
/// sandbox (which inherits the descriptor table without an exec that would close CLOEXEC ones).
pub fn close_fds_except(keep: &[i32]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd > 2)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            // SAFETY: close_range only closes descriptors in the range; none of them is used
            // afterwards by this process (the caller owns the kept ones).
            #[allow(unsafe_code)]
            unsafe {
                libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32);
            }
        }
        first = fd.saturating_add(1);
    }
}

/// The start time of a process (field 22 of `/proc/PID/stat`, clock ticks since boot), used
/// with the pid to recognise the same process after a server restart despite pid reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state), so field 22 is index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The state letter of a process (`R`, `S`, `Z`, …), from `/proc/PID/stat`.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_state(me).is_some());
        assert_eq!(process_start_time(i32::MAX), None);
    }
}
