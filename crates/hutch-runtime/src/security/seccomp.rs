//! The seccomp-bpf part of the sandbox policy.
//!
//! The policy is data, in `resources/seccomp/` at the workspace root, in seccompiler's JSON
//! format (the one Firecracker uses), embedded at build time:
//!
//! - `sandbox.json`: the part valid on every supported architecture. It defines two filters,
//!   both allowing by default: `deny_eperm` makes the listed syscalls fail with `EPERM`, and
//!   `deny_enosys` makes `clone3` fail with `ENOSYS`. Two filters because seccompiler gives each
//!   filter a single `match_action`; the kernel runs every installed filter and the strictest
//!   verdict wins, so splitting costs nothing in meaning.
//! - `sandbox.<arch>.json`: rules for syscalls that only exist on that architecture (x86_64 has
//!   `iopl`, `ioperm`, `uselib`, `ustat`, `sysfs`; aarch64 has none of them), appended to the
//!   filter of the same name. It is a complete seccompiler file whose actions must equal the base
//!   file's, so it reads on its own.
//!
//! seccompiler resolves syscall names per architecture and prefixes every filter with an
//! architecture check that kills the process on a mismatch, so 32-bit (i386, arm32) syscalls
//! cannot bypass a filter written for the 64-bit table. The x32 ABI shares x86_64's audit
//! architecture and is not covered by that check; [`x32_guard`] closes it.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::BTreeSet;

use seccompiler::{sock_filter, BpfProgram, TargetArch};
use serde_json::{Map, Value};

use super::SecurityError;

/// A policy file: name (for error messages) and contents.
type PolicyFile = (&'static str, &'static str);

const BASE_POLICY: PolicyFile = (
    "sandbox.json",
    include_str!("../../../../resources/seccomp/sandbox.json"),
);

const X86_64_POLICY: PolicyFile = (
    "sandbox.x86_64.json",
    include_str!("../../../../resources/seccomp/sandbox.x86_64.json"),
);

/// Filter making the listed syscalls fail with `EPERM`.
const DENY_EPERM: &str = "deny_eperm";
/// Filter making `clone3` fail with `ENOSYS`.
const DENY_ENOSYS: &str = "deny_enosys";
/// Hand-written filter rejecting x32 syscalls on x86_64.
const X32_GUARD: &str = "x32_guard";

/// The architecture this crate is built for.
#[cfg(target_arch = "x86_64")]
const HOST_ARCH: TargetArch = TargetArch::x86_64;
/// The architecture this crate is built for.
#[cfg(target_arch = "aarch64")]
const HOST_ARCH: TargetArch = TargetArch::aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "hutch's seccomp policy is written for x86_64 and aarch64 only: a deny-list filter for \
     another architecture needs its own review of that architecture's syscall table \
     (resources/seccomp/sandbox.<arch>.json)"
);

/// Compiled seccomp filters, ready to install without allocating.
#[derive(Debug)]
pub(super) struct SeccompFilters {
    filters: Vec<(&'static str, BpfProgram)>,
}

impl SeccompFilters {
    /// Compiles the embedded policy for the architecture this crate runs on.
    pub(super) fn compile() -> Result<Self, SecurityError> {
        Self::compile_for(HOST_ARCH)
    }

    /// Compiles the embedded policy for `arch`.
    pub(super) fn compile_for(arch: TargetArch) -> Result<Self, SecurityError> {
        let policy = merge(BASE_POLICY, arch_overlays(arch)?)?;
        Self::from_policy(arch, policy, libc::ENOSYS as u32)
    }

    /// Compiles an already merged policy; `x32_errno` is what x32 syscalls fail with.
    fn from_policy(arch: TargetArch, policy: Value, x32_errno: u32) -> Result<Self, SecurityError> {
        validate(&policy)?;
        let text = serde_json::to_vec(&policy)
            .map_err(|e| SecurityError::SeccompPolicyInvalid(format!("re-serializing: {e}")))?;
        let mut compiled = seccompiler::compile_from_json(text.as_slice(), arch)
            .map_err(SecurityError::SeccompCompile)?;

        let mut filters = Vec::with_capacity(3);
        for name in [DENY_EPERM, DENY_ENOSYS] {
            let program = compiled
                .remove(name)
                .ok_or(SecurityError::SeccompFilterMissing(name))?;
            filters.push((name, program));
        }
        if let Some(extra) = compiled.keys().next() {
            // A filter this code does not know would silently never be installed.
            return Err(SecurityError::SeccompPolicyInvalid(format!(
                "unexpected filter {extra}"
            )));
        }
        if matches!(arch, TargetArch::x86_64) {
            filters.push((X32_GUARD, x32_guard(x32_errno)));
        }
        Ok(Self { filters })
    }

    /// Installs every filter on the calling thread (and so on everything it forks or execs).
    ///
    /// Only syscalls: safe between fork and exec. seccompiler sets `PR_SET_NO_NEW_PRIVS` again
    /// before each filter; that is idempotent.
    pub(super) fn install(&self) -> Result<(), SecurityError> {
        for (name, program) in &self.filters {
            seccompiler::apply_filter(program).map_err(|source| SecurityError::SeccompInstall {
                filter: name,
                source,
            })?;
        }
        Ok(())
    }

    /// Number of filters [`Self::install`] installs.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.filters.len()
    }
}

/// The architecture-specific policy files for `arch`.
fn arch_overlays(arch: TargetArch) -> Result<&'static [PolicyFile], SecurityError> {
    match arch {
        TargetArch::x86_64 => Ok(&[X86_64_POLICY]),
        TargetArch::aarch64 => Ok(&[]),
        TargetArch::riscv64 => Err(SecurityError::SeccompPolicyInvalid(
            "no seccomp policy has been reviewed for riscv64".to_owned(),
        )),
    }
}

fn parse_object(file: PolicyFile) -> Result<Map<String, Value>, SecurityError> {
    match serde_json::from_str(file.1) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SecurityError::SeccompPolicyInvalid(format!(
            "{}: top level is not an object",
            file.0
        ))),
        Err(source) => Err(SecurityError::SeccompPolicyParse {
            file: file.0,
            source,
        }),
    }
}

/// Appends each overlay's rules to the base filter of the same name.
fn merge(base: PolicyFile, overlays: &[PolicyFile]) -> Result<Value, SecurityError> {
    let mut merged = parse_object(base)?;
    for &overlay in overlays {
        for (name, filter) in parse_object(overlay)? {
            let invalid = |what: &str| {
                SecurityError::SeccompPolicyInvalid(format!("{}: filter {name}: {what}", overlay.0))
            };
            let target = merged
                .get_mut(&name)
                .ok_or_else(|| invalid("not defined in the base policy"))?;
            for action in ["mismatch_action", "match_action"] {
                if target.get(action) != filter.get(action) {
                    return Err(invalid(&format!("{action} differs from the base policy")));
                }
            }
            let rules = filter
                .get("filter")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("no filter array"))?;
            target
                .get_mut("filter")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| invalid("no filter array in the base policy"))?
                .extend(rules.iter().cloned());
        }
    }
    Ok(Value::Object(merged))
}

/// Rejects policies seccompiler would compile into something other than what they say.
///
/// seccompiler merges all rules of one syscall in a filter into an OR of their conditions, and
/// a rule without `args` contributes nothing to that OR: listing a syscall both with and
/// without conditions silently turns the unconditional denial into a conditional one.
fn validate(policy: &Value) -> Result<(), SecurityError> {
    let invalid = |what: String| SecurityError::SeccompPolicyInvalid(what);
    let filters = policy
        .as_object()
        .ok_or_else(|| invalid("top level is not an object".to_owned()))?;
    for (name, filter) in filters {
        let rules = filter
            .get("filter")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("filter {name}: no filter array")))?;
        let mut conditional = BTreeSet::new();
        let mut unconditional = BTreeSet::new();
        for rule in rules {
            let syscall = rule
                .get("syscall")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("filter {name}: rule without a syscall name")))?;
            if rule.get("args").is_some() {
                conditional.insert(syscall);
            } else {
                unconditional.insert(syscall);
            }
        }
        if let Some(both) = conditional.intersection(&unconditional).next() {
            return Err(invalid(format!(
                "filter {name}: {both} has rules both with and without args; \
                 seccompiler would drop the unconditional one"
            )));
        }
    }
    Ok(())
}

/// Syscall names per filter, for tests and review.
#[cfg(test)]
fn syscall_names(policy: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (name, filter) in policy.as_object().into_iter().flatten() {
        let names: BTreeSet<String> = filter["filter"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|rule| rule["syscall"].as_str().map(str::to_owned))
            .collect();
        out.insert(name.clone(), names);
    }
    out
}

/// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `__X32_SYSCALL_BIT`: set in the syscall number of every x32 syscall.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
// Classic BPF opcodes (`linux/bpf_common.h`), pre-combined.
/// `BPF_LD | BPF_W | BPF_ABS` (`BPF_LD` and `BPF_W` are 0).
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;

/// A filter failing every x32 syscall with `errno`.
///
/// x32 syscalls run with the x86_64 audit architecture, so seccompiler's architecture check
/// lets them through, and their numbers (`nr | 0x40000000`) match none of the deny rules: on a
/// kernel with `CONFIG_X86_X32_ABI` enabled, a default-allow filter would not see
/// `mount`, `unshare`... called that way. Nothing in a sandbox needs x32, so all of it goes.
/// `ENOSYS` is what a kernel without x32 support answers anyway.
fn x32_guard(errno: u32) -> BpfProgram {
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        // Other architectures: not ours to judge (the seccompiler filters kill them).
        insn(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        insn(BPF_JMP_JSET_K, 0, 1, X32_SYSCALL_BIT),
        insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
        ),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::test_support::{
        expect, expect_errno, expect_errno_for, expect_success, run_in_child, wait, Exit,
    };

    /// Errno the tests substitute for `EPERM`, so that a denial can only come from our filter
    /// (root without seccomp gets EPERM from plenty of places).
    const TEST_ERRNO: u32 = 3999;
    /// Errno the tests give the x32 guard (the kernel itself answers x32 calls with ENOSYS
    /// when built without x32 support, as on the test machine).
    const TEST_X32_ERRNO: u32 = 3998;

    /// The brief's deny list, for every architecture.
    const DENIED_EVERYWHERE: &[&str] = &[
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "mount_setattr",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "name_to_handle_at",
        "swapon",
        "swapoff",
        "reboot",
        "syslog",
        "acct",
        "quotactl",
        "quotactl_fd",
        "userfaultfd",
        "lookup_dcookie",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "vhangup",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "nfsservctl",
        "process_madvise",
        "clone",
        "personality",
    ];
    const DENIED_X86_64_ONLY: &[&str] = &["iopl", "ioperm", "uselib", "ustat", "sysfs"];

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_lists_exactly_the_intended_syscalls() {
        for (arch, extra) in [
            (TargetArch::x86_64, DENIED_X86_64_ONLY),
            (TargetArch::aarch64, &[][..]),
        ] {
            let policy = merge(BASE_POLICY, arch_overlays(arch).expect("overlays")).expect("merge");
            let by_filter = syscall_names(&policy);
            let mut expected_eperm = names(DENIED_EVERYWHERE);
            expected_eperm.extend(names(extra));
            assert_eq!(by_filter[DENY_EPERM], expected_eperm, "{arch:?}");
            assert_eq!(by_filter[DENY_ENOSYS], names(&["clone3"]), "{arch:?}");
            assert_eq!(by_filter.len(), 2, "{arch:?}");
        }
    }

    #[test]
    fn policy_compiles_for_every_supported_arch() {
        let x86 = SeccompFilters::compile_for(TargetArch::x86_64).expect("x86_64");
        assert_eq!(x86.len(), 3, "deny_eperm, deny_enosys, x32_guard");
        let arm = SeccompFilters::compile_for(TargetArch::aarch64).expect("aarch64");
        assert_eq!(arm.len(), 2, "no x32 on aarch64");
        assert!(SeccompFilters::compile_for(TargetArch::riscv64).is_err());
    }

    #[test]
    fn validate_rejects_mixing_conditional_and_unconditional_rules() {
        let policy = serde_json::json!({
            "f": { "mismatch_action": "allow", "match_action": {"errno": 1}, "filter": [
                {"syscall": "clone"},
                {"syscall": "clone", "args": [
                    {"index": 0, "type": "dword", "op": "eq", "val": 0}
                ]}
            ]}
        });
        let err = validate(&policy).expect_err("must be rejected");
        assert!(err.to_string().contains("clone"), "{err}");
    }

    #[test]
    fn merge_rejects_overlays_with_other_actions() {
        const BASE: PolicyFile = (
            "base",
            r#"{"f": {"mismatch_action": "allow", "match_action": {"errno": 1}, "filter": []}}"#,
        );
        const OTHER_ERRNO: PolicyFile = (
            "overlay",
            r#"{"f": {"mismatch_action": "allow", "match_action": {"errno": 2}, "filter": []}}"#,
        );
        const UNKNOWN_FILTER: PolicyFile = (
            "overlay",
            r#"{"g": {"mismatch_action": "allow", "match_action": {"errno": 1}, "filter": []}}"#,
        );
        assert!(merge(BASE, &[OTHER_ERRNO]).is_err());
        assert!(merge(BASE, &[UNKNOWN_FILTER]).is_err());
        assert!(merge(BASE, &[]).is_ok());
    }

    /// One probe: syscall name, number and arguments chosen so that, should the filter miss it,
    /// the call fails harmlessly or does nothing even for full root (null pointers, bad fds,
    /// bad flags, no-op commands), and in any case not with [`TEST_ERRNO`].
    type Probe = (&'static str, libc::c_long, [libc::c_long; 6]);

    const PROBES: &[Probe] = &[
        ("mount", libc::SYS_mount, [0; 6]),
        ("umount2", libc::SYS_umount2, [0; 6]),
        ("pivot_root", libc::SYS_pivot_root, [0; 6]),
        ("unshare", libc::SYS_unshare, [0; 6]), // unshare(0) is a no-op
        ("setns", libc::SYS_setns, [-1, 0, 0, 0, 0, 0]),
        (
            "mount_setattr",
            libc::SYS_mount_setattr,
            [-1, 0, 0, 0, 0, 0],
        ),
        ("fsopen", libc::SYS_fsopen, [0; 6]),
        ("fsconfig", libc::SYS_fsconfig, [-1, 0, 0, 0, 0, 0]),
        ("fsmount", libc::SYS_fsmount, [-1, 0, 0, 0, 0, 0]),
        ("fspick", libc::SYS_fspick, [-1, 0, 0, 0, 0, 0]),
        ("move_mount", libc::SYS_move_mount, [-1, 0, -1, 0, 0, 0]),
        ("open_tree", libc::SYS_open_tree, [-1, 0, 0, 0, 0, 0]),
        ("keyctl", libc::SYS_keyctl, [0x7fff_ffff, 0, 0, 0, 0, 0]),
        ("add_key", libc::SYS_add_key, [0; 6]),
        ("request_key", libc::SYS_request_key, [0; 6]),
        ("bpf", libc::SYS_bpf, [-1, 0, 0, 0, 0, 0]),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            [0, 0, -1, -1, 0, 0],
        ),
        ("kexec_load", libc::SYS_kexec_load, [0, 0, 0, -1, 0, 0]),
        (
            "kexec_file_load",
            libc::SYS_kexec_file_load,
            [-1, -1, 0, 0, -1, 0],
        ),
        ("init_module", libc::SYS_init_module, [0; 6]),
        ("finit_module", libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0]),
        ("delete_module", libc::SYS_delete_module, [0; 6]),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            [-1, 0, 0, 0, 0, 0],
        ),
        (
            "name_to_handle_at",
            libc::SYS_name_to_handle_at,
            [-1, 0, 0, 0, 0, 0],
        ),
        ("swapon", libc::SYS_swapon, [0; 6]),
        ("swapoff", libc::SYS_swapoff, [0; 6]),
        ("reboot", libc::SYS_reboot, [0; 6]), // wrong magic
        ("syslog", libc::SYS_syslog, [0; 6]), // SYSLOG_ACTION_CLOSE: no-op
        ("acct", libc::SYS_acct, [1, 0, 0, 0, 0, 0]), // bad pointer, EFAULT
        ("quotactl", libc::SYS_quotactl, [0; 6]),
        ("quotactl_fd", libc::SYS_quotactl_fd, [-1, 0, 0, 0, 0, 0]),
        ("userfaultfd", libc::SYS_userfaultfd, [-1, 0, 0, 0, 0, 0]),
        ("lookup_dcookie", libc::SYS_lookup_dcookie, [0; 6]),
        ("settimeofday", libc::SYS_settimeofday, [0; 6]), // both NULL: no-op
        (
            "clock_settime",
            libc::SYS_clock_settime,
            [-1, 0, 0, 0, 0, 0],
        ),
        (
            "clock_adjtime",
            libc::SYS_clock_adjtime,
            [-1, 0, 0, 0, 0, 0],
        ),
        ("adjtimex", libc::SYS_adjtimex, [0; 6]),
        ("vhangup", libc::SYS_vhangup, [0; 6]), // the child has no controlling tty
        ("io_uring_setup", libc::SYS_io_uring_setup, [0; 6]),
        (
            "io_uring_enter",
            libc::SYS_io_uring_enter,
            [-1, 0, 0, 0, 0, 0],
        ),
        (
            "io_uring_register",
            libc::SYS_io_uring_register,
            [-1, 0, 0, 0, 0, 0],
        ),
        ("nfsservctl", libc::SYS_nfsservctl, [0; 6]),
        (
            "process_madvise",
            libc::SYS_process_madvise,
            [-1, 0, 0, 0, 0, 0],
        ),
        // ADDR_NO_RANDOMIZE: harmless to the test process, and not an allowed persona.
        (
            "personality",
            libc::SYS_personality,
            [0x0040000, 0, 0, 0, 0, 0],
        ),
        #[cfg(target_arch = "x86_64")]
        ("iopl", libc::SYS_iopl, [4, 0, 0, 0, 0, 0]), // level > 3: EINVAL
        #[cfg(target_arch = "x86_64")]
        ("ioperm", libc::SYS_ioperm, [0x10000, 1, 0, 0, 0, 0]), // out of range: EINVAL
        #[cfg(target_arch = "x86_64")]
        ("uselib", libc::SYS_uselib, [0; 6]),
        #[cfg(target_arch = "x86_64")]
        ("ustat", libc::SYS_ustat, [0; 6]),
        #[cfg(target_arch = "x86_64")]
        ("sysfs", libc::SYS_sysfs, [0xff, 0, 0, 0, 0, 0]),
    ];

    /// `CLONE_NEW*` flags, each of which must make clone(2) fail.
    const NAMESPACE_FLAGS: [libc::c_long; 8] = [
        libc::CLONE_NEWNS as libc::c_long,
        libc::CLONE_NEWCGROUP as libc::c_long,
        libc::CLONE_NEWUTS as libc::c_long,
        libc::CLONE_NEWIPC as libc::c_long,
        libc::CLONE_NEWUSER as libc::c_long,
        libc::CLONE_NEWPID as libc::c_long,
        libc::CLONE_NEWNET as libc::c_long,
        0x80, // CLONE_NEWTIME
    ];

    #[test]
    fn probes_cover_the_whole_policy() {
        let policy =
            merge(BASE_POLICY, arch_overlays(HOST_ARCH).expect("overlays")).expect("merge");
        let mut listed = syscall_names(&policy)[DENY_EPERM].clone();
        listed.remove("clone"); // probed flag by flag below
        let probed: BTreeSet<String> = PROBES.iter().map(|p| p.0.to_owned()).collect();
        assert_eq!(listed, probed);
    }

    /// Raw clone(2) with `flags`; a child that does get created exits at once.
    #[allow(unsafe_code)]
    fn raw_clone(flags: libc::c_long) -> i64 {
        // SAFETY: clone without CLONE_VM and with a null stack behaves like fork: the child gets
        // a copy of this stack and returns here, and leaves immediately through _exit.
        let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if ret == 0 {
            // SAFETY: terminating the just-created child without running any user-space code.
            unsafe { libc::_exit(0) }
        }
        ret
    }

    /// Reaps a child created by [`raw_clone`] when the call unexpectedly succeeded.
    fn reap_if_created(ret: i64) {
        if let Ok(pid) = libc::pid_t::try_from(ret) {
            if pid > 0 {
                let _ = wait(pid);
            }
        }
    }

    /// Installs only the seccomp filters (the child keeps every capability of host root), with
    /// test errnos, and checks each rule of the policy against the live kernel.
    #[test]
    #[allow(unsafe_code)]
    fn every_rule_is_enforced_by_the_kernel() {
        let mut policy =
            merge(BASE_POLICY, arch_overlays(HOST_ARCH).expect("overlays")).expect("merge");
        policy[DENY_EPERM]["match_action"] = serde_json::json!({ "errno": TEST_ERRNO });
        let filters =
            SeccompFilters::from_policy(HOST_ARCH, policy, TEST_X32_ERRNO).expect("compile");
        let denied = TEST_ERRNO as i32;

        run_in_child(|_| {
            // SAFETY: setsid takes no arguments; it detaches from the controlling terminal so
            // that a vhangup() the filter failed to stop would have nothing to hang up.
            expect_success(i64::from(unsafe { libc::setsid() }))?;
            filters
                .install()
                .map_err(|_| crate::security::test_support::Failure::here(-1, 0, 0))?;

            for &(_, nr, a) in PROBES {
                // SAFETY: every probe passes null pointers, invalid fds or invalid flags, or is
                // a no-op (see `PROBES`); the kernel validates all of them.
                let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
                expect_errno_for(ret, denied, nr)?;
            }

            for flag in NAMESPACE_FLAGS {
                let ret = raw_clone(flag | libc::c_long::from(libc::SIGCHLD));
                let err = crate::security::test_support::errno();
                reap_if_created(ret);
                if !(ret == -1 && err == denied) {
                    return Err(crate::security::test_support::Failure::here(ret, err, flag));
                }
            }

            // clone3 gets ENOSYS, even with a null argument that would otherwise be EFAULT.
            // SAFETY: a null clone_args pointer is rejected before anything is created.
            let ret = unsafe { libc::syscall(libc::SYS_clone3, 0, 88) };
            expect_errno(ret, libc::ENOSYS)?;

            // What stays allowed: plain clone (fork) and the harmless personas.
            let ret = raw_clone(libc::c_long::from(libc::SIGCHLD));
            expect_success(ret)?;
            let pid = libc::pid_t::try_from(ret)
                .map_err(|_| crate::security::test_support::Failure::here(ret, 0, 0))?;
            expect(wait(pid)? == Exit::Code(0), 0)?;
            for persona in [0xffff_ffff_u32, 0x8, 0x20000, 0x20008, 0x0] {
                // SAFETY: personality takes an integer; these personas are harmless and the
                // last one restores the default.
                let ret = unsafe { libc::personality(persona as libc::c_ulong) };
                expect_success(i64::from(ret))?;
            }

            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: getpid through the x32 entry point takes no arguments.
                let ret = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
                expect_errno(ret, TEST_X32_ERRNO as i32)?;
            }
            Ok(())
        });
    }
}
