//! Capability reduction to Docker's default set.
//!
//! Sandbox root holds every capability *inside* its user namespace. Most of them are useless
//! there (the namespaces and mounts are owned by the initial user namespace), but each one still
//! widens the kernel surface reachable from user code, so we keep only what ordinary
//! root-expecting software needs: Docker's default set without `CAP_MKNOD` (device nodes have no
//! use in a sandbox, and Landlock denies creating them anyway).
//!
//! Everything here is raw syscalls on stack memory, no allocation: it runs inside
//! [`super::SandboxPolicy::apply`], which tests call between `fork` and `_exit` of a
//! multi-threaded process.

use std::io;

use super::SecurityError;

/// Capabilities kept, as `(number, name)`, from `linux/capability.h`.
pub(super) const KEPT: [(u32, &str); 13] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// [`KEPT`] as a bit mask, the form `/proc/<pid>/status` shows (`CapBnd: 00000000a00425fb`).
pub(super) const KEPT_MASK: u64 = {
    let mut mask = 0u64;
    let mut i = 0;
    while i < KEPT.len() {
        mask |= 1 << KEPT[i].0;
        i += 1;
    }
    mask
};

/// Highest capability number the kernel could know; the loop stops earlier, at the first one
/// `PR_CAPBSET_READ` rejects.
const CAP_NUMBER_LIMIT: u32 = 63;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets split over two `CapUserData` entries.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; index 0 holds capabilities 0..32, index 1 holds 32..64.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Reduces the calling thread's capabilities to [`KEPT`].
///
/// Order matters: the bounding set is trimmed first, while `CAP_SETPCAP` is certainly effective
/// (`PR_CAPBSET_DROP` needs it); then the ambient set is cleared; then `capset` sets
/// permitted and effective to what was permitted ∩ [`KEPT`] (intersected so that a caller already
/// missing one of them does not make `capset` fail), and inheritable to empty.
///
/// Inheritable is deliberately empty rather than [`KEPT`]: a non-empty inheritable set lets a
/// *non-root* user in the sandbox gain those capabilities by executing a file that carries
/// inheritable file capabilities (CVE-2022-24769, fixed in Docker/runc the same way). Root in the
/// sandbox loses nothing, since on `execve` root gets its permitted set from the bounding set.
pub(super) fn restrict_to_kept() -> Result<(), SecurityError> {
    drop_bounding_set()?;
    clear_ambient_set()?;
    set_process_sets()
}

/// Drops from the bounding set every capability the kernel knows that is not in [`KEPT`].
#[allow(unsafe_code)]
fn drop_bounding_set() -> Result<(), SecurityError> {
    for cap in 0..=CAP_NUMBER_LIMIT {
        if KEPT_MASK & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_READ takes an integer capability number and reads no memory.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) };
        if present < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                // Past the last capability this kernel knows (`cap_last_cap`).
                break;
            }
            return Err(SecurityError::CapabilityBoundingDrop { cap, source: err });
        }
        if present == 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number and reads no memory.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) };
        if rc != 0 {
            return Err(SecurityError::CapabilityBoundingDrop {
                cap,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Clears the ambient set, so no capability survives an `execve` by a non-root user.
#[allow(unsafe_code)]
fn clear_ambient_set() -> Result<(), SecurityError> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_CAP_AMBIENT/PR_CAP_AMBIENT_CLEAR_ALL takes only integers (the unused ones must
    // be zero, hence full-width zeros for the variadic arguments) and reads no memory.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            zero,
            zero,
            zero,
        )
    };
    if rc != 0 {
        return Err(SecurityError::CapabilityAmbientClear(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Sets permitted and effective to permitted ∩ [`KEPT`] and inheritable to empty.
#[allow(unsafe_code)]
fn set_process_sets() -> Result<(), SecurityError> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: `header` and `data` are valid, writable, correctly laid out (repr(C)) and, for
    // version 3, `data` must hold two entries, which it does. The kernel writes only into them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapUserHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(SecurityError::CapabilityRead(io::Error::last_os_error()));
    }

    for (i, entry) in data.iter_mut().enumerate() {
        // Truncation intended: entry `i` holds bits 32*i .. 32*i+32.
        let kept = (KEPT_MASK >> (32 * i)) as u32;
        entry.permitted &= kept;
        entry.effective = entry.permitted;
        entry.inheritable = 0;
    }

    // SAFETY: as for capget; the kernel only reads `header` (pid 0 = calling thread) and `data`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(SecurityError::CapabilitySet(io::Error::last_os_error()));
    }
    Ok(())
}

/// Test support: puts `cap` in the inheritable and ambient sets, so that tests start from a
/// state [`restrict_to_kept`] has something to clear in. Raw syscalls only.
#[cfg(test)]
#[allow(unsafe_code)]
pub(super) fn raise_ambient(cap: u32) -> io::Result<()> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: as in `set_process_sets`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapUserHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    data[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
    // SAFETY: as in `set_process_sets`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_CAP_AMBIENT_RAISE takes integers only and reads no memory.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            libc::c_ulong::from(cap),
            zero,
            zero,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_mask_matches_docker_default_without_mknod() {
        // Docker's default CapBnd is 00000000a80425fb; bit 27 is CAP_MKNOD.
        assert_eq!(KEPT_MASK, 0xa804_25fb & !(1 << 27));
        assert_eq!(KEPT_MASK, 0xa004_25fb);
    }
}
