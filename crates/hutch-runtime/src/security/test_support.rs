//! Test helpers for checks that must run in a separate process.
//!
//! Confinement is irreversible and process-wide, so every test forks. The test harness is
//! multi-threaded, so a forked child must stick to raw syscalls: no allocation, no locks, no
//! panics. Checks therefore return a plain-data [`Failure`] (the source line of the failing check,
//! the syscall's return value and errno) that the child writes raw to a pipe; the test process
//! reads it back and panics with a readable message.

use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, Location};

/// A failed check, as reported by a forked process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failure {
    /// Source line of the failing check.
    pub line: u32,
    /// `errno` right after the checked call.
    pub errno: i32,
    /// What the checked call returned.
    pub ret: i64,
    /// Free-form context, e.g. the syscall number a table-driven check was probing.
    pub detail: i64,
}

const FAILURE_SIZE: usize = 24;

impl Failure {
    #[track_caller]
    pub fn here(ret: i64, errno: i32, detail: i64) -> Self {
        Self {
            line: Location::caller().line(),
            errno,
            ret,
            detail,
        }
    }

    fn encode(&self) -> [u8; FAILURE_SIZE] {
        let mut out = [0u8; FAILURE_SIZE];
        out[0..4].copy_from_slice(&self.line.to_ne_bytes());
        out[4..8].copy_from_slice(&self.errno.to_ne_bytes());
        out[8..16].copy_from_slice(&self.ret.to_ne_bytes());
        out[16..24].copy_from_slice(&self.detail.to_ne_bytes());
        out
    }

    fn decode(bytes: &[u8; FAILURE_SIZE]) -> Self {
        let mut word = [0u8; 4];
        let mut dword = [0u8; 8];
        word.copy_from_slice(&bytes[0..4]);
        let line = u32::from_ne_bytes(word);
        word.copy_from_slice(&bytes[4..8]);
        let errno = i32::from_ne_bytes(word);
        dword.copy_from_slice(&bytes[8..16]);
        let ret = i64::from_ne_bytes(dword);
        dword.copy_from_slice(&bytes[16..24]);
        let detail = i64::from_ne_bytes(dword);
        Self {
            line,
            errno,
            ret,
            detail,
        }
    }
}

/// Outcome of one check.
pub(crate) type Check = Result<(), Failure>;

/// The calling thread's errno (`io::Error::last_os_error` does not allocate for OS errors).
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Checks that a syscall returned -1 with `expected` errno. Call it directly on the syscall's
/// result so that nothing runs in between and errno is still the syscall's.
#[track_caller]
pub(crate) fn expect_errno(ret: i64, expected: i32) -> Check {
    expect_errno_for(ret, expected, 0)
}

/// [`expect_errno`] with a `detail` recorded on failure.
#[track_caller]
pub(crate) fn expect_errno_for(ret: i64, expected: i32, detail: i64) -> Check {
    let err = errno();
    if ret == -1 && err == expected {
        Ok(())
    } else {
        Err(Failure::here(ret, err, detail))
    }
}

/// Checks that a syscall succeeded (returned a non-negative value).
#[track_caller]
pub(crate) fn expect_success(ret: i64) -> Check {
    let err = errno();
    if ret >= 0 {
        Ok(())
    } else {
        Err(Failure::here(ret, err, 0))
    }
}

/// Checks an arbitrary condition; `detail` is recorded on failure.
#[track_caller]
pub(crate) fn expect(cond: bool, detail: i64) -> Check {
    if cond {
        Ok(())
    } else {
        Err(Failure::here(0, 0, detail))
    }
}

/// How a waited-for process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
}

/// Waits for `pid` (a child of the caller), retrying on EINTR.
#[allow(unsafe_code)]
#[track_caller]
pub(crate) fn wait(pid: libc::pid_t) -> Result<Exit, Failure> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int; waitpid writes only there.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let err = errno();
        if rc == -1 && err == libc::EINTR {
            continue;
        }
        return Err(Failure::here(i64::from(rc), err, i64::from(pid)));
    }
    if libc::WIFEXITED(status) {
        Ok(Exit::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Ok(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        Err(Failure::here(i64::from(status), 0, i64::from(pid)))
    }
}

/// Waits for `pid` and checks that it exited with status 0.
#[track_caller]
pub(crate) fn expect_clean_exit(pid: libc::pid_t) -> Check {
    match wait(pid)? {
        Exit::Code(0) => Ok(()),
        Exit::Code(code) => Err(Failure::here(i64::from(code), 0, i64::from(pid))),
        Exit::Signal(sig) => Err(Failure::here(-i64::from(sig), 0, i64::from(pid))),
    }
}

/// Body of a child that sleeps until killed. It also dies with its parent (`parent`, the
/// caller's pid before forking; for a test thread, when that thread ends), so a failing test
/// never leaves it behind — where it would keep the harness's output pipe open.
#[allow(unsafe_code)]
pub(crate) fn sleep_until_killed(parent: libc::pid_t) -> ! {
    // SAFETY: prctl, getppid, _exit and pause take integers or nothing.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            // The parent died before the death signal was armed.
            libc::_exit(3);
        }
        loop {
            libc::pause();
        }
    }
}

/// Write end of the pipe forked processes report failures on; copied into every descendant.
#[derive(Clone, Copy)]
pub(crate) struct Reporter {
    fd: RawFd,
}

impl Reporter {
    #[allow(unsafe_code)]
    fn report(&self, failure: &Failure) {
        let bytes = failure.encode();
        // SAFETY: `bytes` is a valid buffer of the given length; a short or failed write only
        // loses the diagnostic, the exit status still reports the failure.
        let _ = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    /// Forks; the child runs `f` and exits 0 on success, or reports the failure and exits 1
    /// (2 if `f` panicked). Never returns in the child. Returns the child's pid.
    #[allow(unsafe_code)]
    #[track_caller]
    pub fn spawn(&self, f: impl FnOnce() -> Check) -> Result<libc::pid_t, Failure> {
        // SAFETY: the child only runs `f`, which by this module's contract makes raw syscalls,
        // then leaves through `_exit` (no atexit handlers, no return into the test harness).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Failure::here(i64::from(pid), errno(), 0));
        }
        if pid == 0 {
            let code = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => 0,
                Ok(Err(failure)) => {
                    self.report(&failure);
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: terminates the forked child immediately, as the fork contract requires.
            unsafe { libc::_exit(code) }
        }
        Ok(pid)
    }
}

/// Runs `f` in a forked child and panics, naming the failing check, if it fails.
#[allow(unsafe_code)]
pub(crate) fn run_in_child(f: impl FnOnce(Reporter) -> Check) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill. O_NONBLOCK on the read end
    // matters: processes forked concurrently by other tests inherit our write end, so reading
    // must not wait for end-of-file, only for what our (already reaped) child wrote.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    let [read_fd, write_fd] = fds;
    let reporter = Reporter { fd: write_fd };

    let spawned = reporter.spawn(|| f(reporter));
    // SAFETY: `write_fd` is ours and no longer needed in this process.
    unsafe { libc::close(write_fd) };
    let exit = spawned.and_then(wait);

    let mut buf = [0u8; FAILURE_SIZE];
    // SAFETY: `buf` is a valid writable buffer of the given length.
    let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `read_fd` is ours and closed once.
    unsafe { libc::close(read_fd) };

    let reported = (n == FAILURE_SIZE as isize).then(|| Failure::decode(&buf));
    match (reported, exit) {
        (Some(failure), _) | (None, Err(failure)) => panic!(
            "check at line {} failed: returned {}, errno {} ({}), detail {:#x}",
            failure.line,
            failure.ret,
            failure.errno,
            io::Error::from_raw_os_error(failure.errno),
            failure.detail
        ),
        (None, Ok(Exit::Code(0))) => {}
        (None, Ok(other)) => panic!("forked test process ended with {other:?}"),
    }
}
