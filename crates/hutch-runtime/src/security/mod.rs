//! Confinement applied inside the sandbox: capabilities, no_new_privs, seccomp, Landlock.
//!
//! Namespaces owned by the initial user namespace already keep sandbox root from remounting or
//! reconfiguring the network. This module shrinks what is left: the kernel surface user code
//! can reach and its power over the sandbox's own supervisor processes. Two entry points, for two
//! moments in a sandbox's life:
//!
//! - [`apply_sandbox_policy`], once, in the process about to become the sandbox's PID 1, right
//!   after it became root in its user namespace. Its effects are inherited by everything the
//!   sandbox ever runs: capabilities cut to Docker's default set (less `CAP_MKNOD`),
//!   `no_new_privs`, and a seccomp filter denying mount and namespace manipulation and other
//!   host-level syscalls (the policy is data, in `resources/seccomp/` at the workspace root).
//! - [`ChildConfinement`], created once by the agent and applied to each user process between
//!   fork and exec: a Landlock domain that keeps user code from signalling the agent or PID 1
//!   and from creating device nodes.

mod caps;
mod landlock;
mod seccomp;
#[cfg(test)]
mod test_support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

pub use self::landlock::ChildConfinement;

/// A step of the confinement that failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The process-wide policy is applied once per process; a second attempt is a bug.
    #[error("the sandbox policy was already applied in this process")]
    AlreadyApplied,
    #[error("parsing seccomp policy file {file}")]
    SeccompPolicyParse {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid seccomp policy: {0}")]
    SeccompPolicyInvalid(String),
    #[error("compiling the seccomp policy")]
    SeccompCompile(#[source] seccompiler::Error),
    #[error("the seccomp policy defines no filter named {0}")]
    SeccompFilterMissing(&'static str),
    #[error("dropping capability {cap} from the bounding set")]
    CapabilityBoundingDrop {
        cap: u32,
        #[source]
        source: io::Error,
    },
    #[error("clearing the ambient capability set")]
    CapabilityAmbientClear(#[source] io::Error),
    #[error("reading the capability sets")]
    CapabilityRead(#[source] io::Error),
    #[error("setting the permitted, effective and inheritable capability sets")]
    CapabilitySet(#[source] io::Error),
    #[error("setting no_new_privs")]
    NoNewPrivs(#[source] io::Error),
    #[error("installing seccomp filter {filter}")]
    SeccompInstall {
        filter: &'static str,
        #[source]
        source: seccompiler::Error,
    },
    #[error("querying the landlock abi version")]
    LandlockAbi(#[source] io::Error),
    #[error("creating the landlock ruleset")]
    LandlockRuleset(#[source] ::landlock::RulesetError),
    #[error("landlock is supported but no ruleset was created")]
    LandlockRulesetMissing,
}

/// Set by the first [`SandboxPolicy::apply`] in this process.
static APPLIED: AtomicBool = AtomicBool::new(false);

/// The process-wide sandbox policy, compiled and ready to apply.
///
/// Split from [`apply_sandbox_policy`] so that everything that allocates (parsing and compiling
/// the seccomp policy) can happen before a `fork` or `clone`, and [`SandboxPolicy::apply`]
/// afterwards only makes syscalls — which is what a child forked from a multi-threaded process
/// may do.
#[derive(Debug)]
pub struct SandboxPolicy {
    seccomp: seccomp::SeccompFilters,
}

impl SandboxPolicy {
    /// Compiles the embedded seccomp policy for this architecture.
    pub fn compile() -> Result<Self, SecurityError> {
        Ok(Self {
            seccomp: seccomp::SeccompFilters::compile()?,
        })
    }

    /// Applies the policy to the calling thread, and so to everything it later forks or execs:
    /// capabilities, then `no_new_privs`, then seccomp.
    ///
    /// Must run single-threaded: capabilities and seccomp filters are per thread, and threads
    /// started earlier would keep their privileges. At most once per process, even if the first
    /// attempt failed midway: the process is then in an unknown state and should exit. Only
    /// syscalls, no allocation.
    ///
    /// The order is forced: dropping the bounding set needs `CAP_SETPCAP`, still there before
    /// the capability step; seccomp filters need `no_new_privs` when `CAP_SYS_ADMIN` is gone.
    #[allow(unsafe_code)]
    pub fn apply(&self) -> Result<(), SecurityError> {
        if APPLIED.swap(true, Ordering::SeqCst) {
            return Err(SecurityError::AlreadyApplied);
        }
        caps::restrict_to_kept()?;

        let one: libc::c_ulong = 1;
        let zero: libc::c_ulong = 0;
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only (the unused ones must be zero, hence
        // full-width zeros for the variadic arguments) and reads no memory.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) } != 0 {
            return Err(SecurityError::NoNewPrivs(io::Error::last_os_error()));
        }

        self.seccomp.install()
    }
}

/// Confines the calling process for life: capabilities cut to Docker's default set less
/// `CAP_MKNOD` (bounding, permitted and effective; inheritable and ambient emptied), `no_new_privs`, and the seccomp
/// filters of `resources/seccomp/`.
///
/// Called in the sandbox's future PID 1 after it became root in its new user namespace, before
/// it starts anything. The caller must be single-threaded; a second call fails with
/// [`SecurityError::AlreadyApplied`].
pub fn apply_sandbox_policy() -> Result<(), SecurityError> {
    if APPLIED.load(Ordering::SeqCst) {
        return Err(SecurityError::AlreadyApplied);
    }
    SandboxPolicy::compile()?.apply()
}

#[cfg(test)]
mod tests {
    use super::test_support::{
        errno, expect, expect_errno, expect_success, run_in_child, sleep_until_killed, wait, Check,
        Exit, Failure,
    };
    use super::*;

    /// Reads `/proc/self/status` into `buf` with raw syscalls; returns the filled part.
    #[allow(unsafe_code)]
    fn read_status(buf: &mut [u8]) -> Result<&[u8], Failure> {
        // SAFETY: the path is a NUL-terminated literal.
        let fd = unsafe { libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY) };
        expect_success(i64::from(fd))?;
        let mut len = 0;
        while len < buf.len() {
            // SAFETY: reads into the unfilled tail of `buf`, within its bounds.
            let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        // SAFETY: closes the fd opened above, once.
        unsafe { libc::close(fd) };
        Ok(&buf[..len])
    }

    /// The value of field `name` (e.g. `b"Seccomp:"`) in `/proc/self/status` text.
    fn status_field<'a>(status: &'a [u8], name: &[u8]) -> &'a [u8] {
        status
            .split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.trim_ascii())
            .unwrap_or(b"")
    }

    /// Parses a hexadecimal field without allocating; `u64::MAX` if malformed.
    fn hex(value: &[u8]) -> u64 {
        let mut out = 0u64;
        for &b in value {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return u64::MAX,
            };
            out = (out << 4) | u64::from(digit);
        }
        out
    }

    #[track_caller]
    fn expect_field(status: &[u8], name: &[u8], expected: &[u8]) -> Check {
        let value = status_field(status, name);
        // Record up to 8 bytes of what was found, readable as hex in the failure message.
        let mut found = [0u8; 8];
        let n = value.len().min(8);
        found[..n].copy_from_slice(&value[..n]);
        expect(value == expected, i64::from_be_bytes(found))
    }

    /// Starts a non-dumpable process that sleeps until killed: the stand-in for PID 1.
    #[allow(unsafe_code)]
    fn spawn_nondumpable_sleeper() -> libc::pid_t {
        // SAFETY: getpid takes no arguments.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child only makes raw syscalls and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl takes integers and reads no memory.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) };
            sleep_until_killed(parent)
        }
        assert!(pid > 0, "fork: {}", io::Error::last_os_error());
        pid
    }

    #[test]
    #[allow(unsafe_code)]
    fn sandbox_policy_confines_a_forked_process() {
        let policy = SandboxPolicy::compile().expect("compile");
        let target = spawn_nondumpable_sleeper();

        run_in_child(|_| {
            // Control: before the policy, host root can ptrace the non-dumpable process.
            // SAFETY: ptrace with integer arguments; the target is stopped, waited for and
            // detached again below, unchanged.
            let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, target, 0, 0) };
            expect_success(ret)?;
            let mut status = 0;
            // SAFETY: `status` is a valid c_int; we are the tracer and may wait for the tracee.
            let ret = unsafe { libc::waitpid(target, &mut status, libc::__WALL) };
            expect(ret == target, i64::from(ret))?;
            // SAFETY: ptrace with integer arguments, detaching the tracee we attached.
            expect_success(unsafe { libc::ptrace(libc::PTRACE_DETACH, target, 0, 0) })?;

            // Start with something in the inheritable and ambient sets, for the policy to clear.
            // CAP_NET_BIND_SERVICE (10) is one of the kept capabilities.
            caps::raise_ambient(10)
                .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))?;
            let mut buf = [0u8; 8192];
            let status = read_status(&mut buf)?;
            expect(hex(status_field(status, b"CapAmb:")) == 1 << 10, 0)?;

            policy.apply().map_err(|_| Failure::here(-1, errno(), 0))?;
            expect(
                matches!(policy.apply(), Err(SecurityError::AlreadyApplied)),
                0,
            )?;
            expect(
                matches!(apply_sandbox_policy(), Err(SecurityError::AlreadyApplied)),
                0,
            )?;

            // Nonexistent target: without seccomp this is ENOENT even for a process without
            // CAP_SYS_ADMIN, since the path is looked up before the permission check.
            // SAFETY: valid NUL-terminated literals or nulls.
            let ret = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/nonexistent/hutch".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            expect_errno(i64::from(ret), libc::EPERM)?;
            // Creating a user namespace needs no capability, so only seccomp can refuse it.
            // SAFETY: unshare takes integer flags.
            let ret = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
            expect_errno(i64::from(ret), libc::EPERM)?;
            // SAFETY: as above.
            let ret = unsafe { libc::unshare(libc::CLONE_NEWNS) };
            expect_errno(i64::from(ret), libc::EPERM)?;
            for flag in [libc::CLONE_NEWNET, libc::CLONE_NEWUSER] {
                // SAFETY: clone without CLONE_VM and a null stack behaves like fork; should it
                // succeed, the child exits at once.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_clone,
                        libc::c_long::from(flag | libc::SIGCHLD),
                        0,
                        0,
                        0,
                        0,
                    )
                };
                if ret == 0 {
                    // SAFETY: terminate the unexpected child immediately.
                    unsafe { libc::_exit(0) }
                }
                expect_errno(ret, libc::EPERM)?;
            }
            // SAFETY: a null clone_args pointer creates nothing (EFAULT without seccomp).
            let ret = unsafe { libc::syscall(libc::SYS_clone3, 0, 88) };
            expect_errno(ret, libc::ENOSYS)?;

            // Ordinary process and thread creation still work: fork uses clone(2), and
            // pthread_create falls back from clone3 to clone(2) on ENOSYS.
            // SAFETY: the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: terminate the child immediately.
                unsafe { libc::_exit(42) }
            }
            expect_success(i64::from(pid))?;
            expect(wait(pid)? == Exit::Code(42), i64::from(pid))?;
            extern "C" fn thread_main(_: *mut libc::c_void) -> *mut libc::c_void {
                std::ptr::null_mut()
            }
            let mut thread: libc::pthread_t = 0;
            // SAFETY: `thread` is valid for writing, default attributes, and `thread_main`
            // ignores its argument. glibc's malloc stays usable after fork, which
            // pthread_create may need.
            let ret = unsafe {
                libc::pthread_create(
                    &mut thread,
                    std::ptr::null(),
                    thread_main,
                    std::ptr::null_mut(),
                )
            };
            expect(ret == 0, i64::from(ret))?;
            // SAFETY: joins the thread created above, once.
            let ret = unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
            expect(ret == 0, i64::from(ret))?;

            // Without CAP_SYS_PTRACE, a non-dumpable process cannot be traced any more.
            // SAFETY: ptrace with integer arguments.
            let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, target, 0, 0) };
            expect_errno(ret, libc::EPERM)?;

            let mut buf = [0u8; 8192];
            let status = read_status(&mut buf)?;
            expect_field(status, b"Seccomp:", b"2")?;
            expect_field(status, b"NoNewPrivs:", b"1")?;
            let kept = caps::KEPT_MASK;
            for field in [&b"CapBnd:"[..], b"CapPrm:", b"CapEff:"] {
                let value = hex(status_field(status, field));
                expect(value == kept, value as i64)?;
            }
            for field in [&b"CapInh:"[..], b"CapAmb:"] {
                let value = hex(status_field(status, field));
                expect(value == 0, value as i64)?;
            }
            Ok(())
        });

        // SAFETY: kill takes integers; `target` is our child, reaped right after.
        unsafe { libc::kill(target, libc::SIGKILL) };
        assert_eq!(wait(target).ok(), Some(Exit::Signal(libc::SIGKILL)));
    }

    #[test]
    fn child_confinement_still_works_under_the_sandbox_policy() {
        let policy = SandboxPolicy::compile().expect("compile");
        let confinement = ChildConfinement::new().expect("confinement");
        run_in_child(|_| {
            policy.apply().map_err(|_| Failure::here(-1, errno(), 0))?;
            confinement
                .apply_in_child()
                .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))
        });
    }

    #[test]
    fn error_messages_are_lower_case() {
        let err = SecurityError::NoNewPrivs(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(err.to_string(), "setting no_new_privs");
        assert!(std::error::Error::source(&err).is_some());
    }
}
