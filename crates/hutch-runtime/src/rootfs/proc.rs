//! A fresh `/proc` for the sandbox's pid namespace, with the host-facing files masked.

use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::mounts::{io_err, remount_read_only, sys, MountError};

/// Files that would leak host state or let the sandbox poke the kernel: hidden behind /dev/null.
const MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
];
/// Directories hidden behind an empty read-only tmpfs.
const MASKED_DIRS: &[&str] = &["acpi", "scsi", "asound"];
/// Kernel knobs that stay readable but become read-only.
const READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

pub(super) fn mount_masked(proc_dir: &Path, dev_null: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(proc_dir).map_err(io_err("mkdir", proc_dir))?;
    mount(
        Some("proc"),
        proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys("mount proc", proc_dir))?;
    for name in READ_ONLY {
        let p = proc_dir.join(name);
        if p.exists() {
            mount(
                Some(&p),
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys("bind", &p))?;
            remount_read_only(&p)?;
        }
    }
    for name in MASKED_FILES {
        let p = proc_dir.join(name);
        if p.exists() {
            mount(
                Some(dev_null),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("mask", &p))?;
        }
    }
    for name in MASKED_DIRS {
        let p = proc_dir.join(name);
        if p.is_dir() {
            mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
            )
            .map_err(sys("mask", &p))?;
        }
    }
    Ok(())
}
