//! Reference measurements taken in the same run as hutch's, so ratios survive machine drift.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::stats::Samples;
use super::WARMUP;

/// bwrap with every namespace unshared over the host's /usr, the same view hutch gives.
pub fn bwrap_argv<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ];
    v.extend_from_slice(cmd);
    v
}

/// Bare `python3 -c 'print(1)'` (Debian's, not a shim on PATH).
pub const BARE_PYTHON: &[&str] = &["/usr/bin/python3", "-c", "print(1)"];

/// Times `n` runs of `argv` (after a warm-up).
pub fn reference(n: usize, argv: &[&str]) -> Result<Samples> {
    let mut s = Samples::default();
    for i in 0..WARMUP + n {
        let t = Instant::now();
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| {
                format!(
                    "cannot run {} (install it: apt-get install bubblewrap)",
                    argv[0]
                )
            })?;
        if !status.success() {
            bail!("reference {argv:?} failed: {status}");
        }
        if i >= WARMUP {
            s.push(t.elapsed());
        }
    }
    Ok(s)
}
