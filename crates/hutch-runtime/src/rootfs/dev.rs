//! A minimal `/dev`: the harmless character devices, a private devpts for terminals, shm.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::mounts::{io_err, sys, MountError};

/// Devices bound from the host. Nothing that reaches hardware, kernel memory or other ttys.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

pub(super) fn populate(dev: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(dev).map_err(io_err("mkdir", dev))?;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )
    .map_err(sys("mount tmpfs", dev))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        std::fs::File::create(&target).map_err(io_err("create", &target))?;
        mount(
            Some(&host),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("bind device", &target))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(io_err("mkdir", &pts))?;
    // A new devpts instance: the sandbox sees only its own terminals.
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(sys("mount devpts", &pts))?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(io_err("mkdir", &shm))?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(sys("mount shm", &shm))?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(link);
        symlink(to, &path).map_err(io_err("symlink", &path))?;
    }
    Ok(())
}
