//! Per-process Landlock confinement of user code.
//!
//! The process-wide policy ([`super::apply_sandbox_policy`]) applies equally to PID 1, the agent
//! and user code. What sets user code apart is that it must not interfere with the agent or
//! PID 1, which run as the same sandbox root: same uid, same capabilities, so no classic
//! permission check separates them. Landlock scoping does. Each user process is put, between
//! fork and exec, in a Landlock domain; with `LANDLOCK_SCOPE_SIGNAL` it can then signal only
//! processes in the same domain or nested ones (its own descendants), and with
//! `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` it can connect only to abstract Unix sockets created in
//! the same domain. Landlock also confines `ptrace` the same way, regardless of scopes.
//!
//! The ruleset also handles `MAKE_CHAR` and `MAKE_BLOCK` without any rule granting them, so
//! creating device nodes is denied everywhere, whatever the capabilities.
//!
//! Domains come from `landlock_restrict_self` calls: every call makes a new one, and children
//! inherit their parent's. Two user processes the agent spawned separately are therefore in
//! *sibling* domains and cannot signal each other either; only a process and its descendants
//! share one. If commands must be able to signal each other (start a server in one command, kill
//! it in the next), spawn them from one confined long-lived process instead of straight from the
//! agent.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use ::landlock::{AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreated, Scope};

use super::SecurityError;

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask `landlock_create_ruleset` for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;

/// First Landlock ABI with scopes (signals and abstract Unix sockets), Linux 6.12.
const SCOPES_ABI: i32 = 6;

/// The Landlock ruleset every user process is confined by; see the module documentation.
///
/// Created once (it allocates and makes a few syscalls), then applied in each child by
/// [`ChildConfinement::apply_in_child`], which only makes syscalls. Share it with `Arc` to move
/// it into `pre_exec` closures:
///
/// ```no_run
/// # use std::{os::unix::process::CommandExt, process::Command, sync::Arc};
/// # use hutch_runtime::security::ChildConfinement;
/// let confinement = Arc::new(ChildConfinement::new()?);
/// let mut cmd = Command::new("python3");
/// let c = Arc::clone(&confinement);
/// // SAFETY: apply_in_child is async-signal-safe.
/// unsafe { cmd.pre_exec(move || c.apply_in_child()) };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ChildConfinement {
    /// The ruleset; `None` when the kernel has no Landlock. Landlock creates it close-on-exec,
    /// so user code never inherits it.
    ruleset: Option<OwnedFd>,
    /// Whether the ruleset includes the signal and abstract-socket scopes (ABI ≥ 6).
    scoped: bool,
}

impl ChildConfinement {
    /// Builds the ruleset for the running kernel.
    ///
    /// Without Landlock in the kernel (or disabled at boot) this succeeds with confinement
    /// disabled and a warning: the sandbox still has its namespaces, capabilities and seccomp.
    /// Any other failure is an error, so a broken setup never silently runs unconfined.
    pub fn new() -> Result<Self, SecurityError> {
        let Some(abi) = landlock_abi()? else {
            tracing::warn!(
                "the kernel has no usable Landlock: user processes will be able to signal the \
                 agent and PID 1 and to create device nodes"
            );
            return Ok(Self {
                ruleset: None,
                scoped: false,
            });
        };
        let scoped = abi >= SCOPES_ABI;
        if !scoped {
            tracing::warn!(
                abi,
                "Landlock ABI below {SCOPES_ABI}: no signal scoping, user processes will be able \
                 to signal the agent and PID 1"
            );
        }

        // Hard requirement: we asked the kernel what it supports, so anything the crate would
        // otherwise silently drop is a bug worth failing on.
        let ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::MakeChar | AccessFs::MakeBlock)
            .map_err(SecurityError::LandlockRuleset)?;
        let ruleset = if scoped {
            ruleset
                .scope(Scope::Signal | Scope::AbstractUnixSocket)
                .map_err(SecurityError::LandlockRuleset)?
        } else {
            ruleset
        };
        let created: RulesetCreated = ruleset.create().map_err(SecurityError::LandlockRuleset)?;
        let fd: Option<OwnedFd> = created.into();
        let fd = fd.ok_or(SecurityError::LandlockRulesetMissing)?;
        tracing::debug!(abi, scoped, "Landlock ruleset for user processes ready");
        Ok(Self {
            ruleset: Some(fd),
            scoped,
        })
    }

    /// Whether [`Self::apply_in_child`] actually confines (the kernel supports Landlock).
    pub fn landlock_active(&self) -> bool {
        self.ruleset.is_some()
    }

    /// Whether confined processes are also kept from signalling, and connecting to abstract
    /// Unix sockets of, processes outside their domain (Landlock ABI ≥ 6).
    pub fn scopes_active(&self) -> bool {
        self.scoped
    }

    /// Confines the calling process; meant for a `pre_exec` hook.
    ///
    /// Async-signal-safe: two raw syscalls, no allocation, no locks, since it runs between fork
    /// and exec in a multi-threaded process. Sets `PR_SET_NO_NEW_PRIVS` first: Landlock requires
    /// it (or `CAP_SYS_ADMIN`), and although the sandbox policy already set it process-wide,
    /// confinement must not depend on the caller having run that.
    #[allow(unsafe_code)]
    pub fn apply_in_child(&self) -> io::Result<()> {
        let one: libc::c_ulong = 1;
        let zero: libc::c_ulong = 0;
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only (the unused ones must be zero, hence
        // full-width zeros for the variadic arguments) and reads no memory.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let Some(ruleset) = &self.ruleset else {
            return Ok(());
        };
        // SAFETY: landlock_restrict_self takes a ruleset fd, which `ruleset` keeps open for as
        // long as `self` lives, and integer flags; it reads no user memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                ruleset.as_raw_fd(),
                0 as libc::c_uint,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The kernel's Landlock ABI version, or `None` if Landlock is not built in or not enabled.
#[allow(unsafe_code)]
fn landlock_abi() -> Result<Option<i32>, SecurityError> {
    // SAFETY: with a null attr, size 0 and the VERSION flag, landlock_create_ruleset reads no
    // memory and creates nothing; it returns the ABI version.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret >= 0 {
        return Ok(Some(i32::try_from(ret).unwrap_or(i32::MAX)));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(None),
        _ => Err(SecurityError::LandlockAbi(err)),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::security::test_support::{
        expect, expect_clean_exit, expect_errno, expect_success, run_in_child, sleep_until_killed,
        wait, Exit, Failure,
    };

    fn confinement() -> ChildConfinement {
        let c = ChildConfinement::new().expect("ChildConfinement::new");
        assert!(c.landlock_active(), "the test machine has Landlock");
        assert!(c.scopes_active(), "the test machine has Landlock ABI >= 6");
        c
    }

    /// The caller's pid, for [`sleep_until_killed`] in a child about to be forked.
    #[allow(unsafe_code)]
    fn own_pid() -> libc::pid_t {
        // SAFETY: getpid takes no arguments.
        unsafe { libc::getpid() }
    }

    #[test]
    #[allow(unsafe_code)]
    fn ruleset_fd_is_close_on_exec() {
        let c = confinement();
        let fd = c.ruleset.as_ref().expect("ruleset").as_raw_fd();
        // SAFETY: F_GETFD on an fd we own reads no memory.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0, "flags {flags}");
    }

    /// The scenario of the sandbox: P stands for PID 1 or the agent (non-dumpable, outside any
    /// domain); G is user code confined by `apply_in_child`; GG is a process G started.
    #[test]
    #[allow(unsafe_code)]
    fn confined_process_cannot_signal_its_parent_but_can_signal_its_child() {
        let c = confinement();
        run_in_child(|reporter| {
            // SAFETY: PR_SET_DUMPABLE takes an integer and reads no memory.
            expect_success(i64::from(unsafe {
                libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong)
            }))?;
            let p = own_pid();
            let g = reporter.spawn(|| {
                c.apply_in_child()
                    .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))?;
                // SAFETY: kill takes integers; P is alive (it waits for us) and outside our
                // domain, so scoping must refuse.
                let ret = unsafe { libc::kill(p, libc::SIGTERM) };
                expect_errno(i64::from(ret), libc::EPERM)?;
                // SAFETY: as above, signal 0 (existence check) is refused too.
                expect_errno(i64::from(unsafe { libc::kill(p, 0) }), libc::EPERM)?;

                let g_pid = own_pid();
                let gg = reporter.spawn(|| sleep_until_killed(g_pid))?;
                // SAFETY: kill takes integers; GG inherited our domain.
                expect_success(i64::from(unsafe { libc::kill(gg, libc::SIGTERM) }))?;
                expect(wait(gg)? == Exit::Signal(libc::SIGTERM), i64::from(gg))
            })?;
            expect_clean_exit(g)
        });
    }

    /// Documents a consequence of one domain per `apply_in_child` call: processes confined
    /// separately (two commands the agent ran) cannot signal each other, while their
    /// unconfined parent can signal both.
    #[test]
    #[allow(unsafe_code)]
    fn separately_confined_siblings_cannot_signal_each_other() {
        let c = confinement();
        run_in_child(|reporter| {
            let p = own_pid();
            let first = reporter.spawn(|| {
                c.apply_in_child()
                    .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))?;
                sleep_until_killed(p)
            })?;
            let second = reporter.spawn(|| {
                c.apply_in_child()
                    .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))?;
                // SAFETY: kill takes integers; `first` is in a sibling domain, whether or not it
                // has confined itself yet (unconfined is outside our domain too).
                expect_errno(
                    i64::from(unsafe { libc::kill(first, libc::SIGTERM) }),
                    libc::EPERM,
                )
            })?;
            let second_result = expect_clean_exit(second);
            // SAFETY: kill takes integers; we are unconfined and `first` is our child.
            expect_success(i64::from(unsafe { libc::kill(first, libc::SIGKILL) }))?;
            expect(wait(first)? == Exit::Signal(libc::SIGKILL), 0)?;
            second_result
        });
    }

    #[test]
    #[allow(unsafe_code)]
    fn confined_process_cannot_create_device_nodes() {
        let c = confinement();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| {
            CString::new(dir.path().join(name).as_os_str().as_bytes()).expect("no NUL in path")
        };
        let (control, device, block, fifo) =
            (path("control"), path("null"), path("block"), path("fifo"));
        let null_dev = libc::makedev(1, 3);

        run_in_child(|reporter| {
            // Control: unconfined, host root can create the node, so a failure below is
            // Landlock's doing and not the file system's.
            // SAFETY: `control` is a valid NUL-terminated path that outlives the call.
            expect_success(i64::from(unsafe {
                libc::mknod(control.as_ptr(), libc::S_IFCHR | 0o600, null_dev)
            }))?;
            let g = reporter.spawn(|| {
                c.apply_in_child()
                    .map_err(|e| Failure::here(-1, e.raw_os_error().unwrap_or(0), 0))?;
                // SAFETY: valid NUL-terminated paths that outlive the calls.
                let ret = unsafe { libc::mknod(device.as_ptr(), libc::S_IFCHR | 0o600, null_dev) };
                expect_errno(i64::from(ret), libc::EACCES)?;
                let loop0 = libc::makedev(7, 0);
                // SAFETY: as above.
                let ret = unsafe { libc::mknod(block.as_ptr(), libc::S_IFBLK | 0o600, loop0) };
                expect_errno(i64::from(ret), libc::EACCES)?;
                // FIFOs are not handled by the ruleset and stay allowed.
                // SAFETY: as above.
                expect_success(i64::from(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }))
            })?;
            expect_clean_exit(g)
        });
        assert!(!dir.path().join("null").exists());
        assert!(!dir.path().join("block").exists());
    }
}
