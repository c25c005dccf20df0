//! Host firewall and NAT for sandbox veths, as one nftables table (`inet hutch`).
//!
//! The ruleset is fed to `nft -f -` as a single script, which nft submits as a single
//! netfilter transaction: the kernel applies all of it or none of it, and concurrent
//! transactions are serialised by the kernel. The script starts with "create the table if
//! missing, then delete it" so a re-run *replaces* the table atomically; there is never a moment
//! with the table half-populated or missing, and two servers starting at once both succeed.
//! (`delete` rather than `flush` because flush keeps the chains, and re-declaring a base chain
//! with a different hook or priority than an older version of this code installed would fail.)
//!
//! Matching on `iifname "hutch*"` / `oifname "hutch*"` rather than on per-sandbox interfaces
//! means the rules never change as sandboxes come and go: attaching a sandbox is netlink only.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{NetError, HOST_IF_PREFIX};

/// The nftables table this module owns. Nothing else in it is preserved across installs.
pub(super) const TABLE: &str = "hutch";

/// Renders the full ruleset for a pool `base/prefix_len`.
pub(super) fn ruleset(base: Ipv4Addr, prefix_len: u8) -> String {
    let hutch = format!("\"{HOST_IF_PREFIX}*\"");
    format!(
        r#"table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
	# Anti-spoofing: a packet from a sandbox must carry a source address that routes back out
	# of the interface it came in on (strict reverse-path). Stops a sandbox forging another
	# sandbox's address or sending un-NATed packets with a foreign source to the uplink.
	chain prerouting {{
		type filter hook prerouting priority raw; policy accept;
		iifname {hutch} fib saddr . iif oif missing counter drop
	}}

	# Sandboxes may not talk to the host itself (any host address: uplink, the veth gateway,
	# IPv6 link-local). Reject instead of drop so sandbox code gets a fast "connection refused".
	chain input {{
		type filter hook input priority filter; policy accept;
		iifname {hutch} ct state established,related accept
		iifname {hutch} meta l4proto tcp reject with tcp reset
		iifname {hutch} reject with icmpx port-unreachable
	}}

	# Sandboxes may reach the outside world but not each other; nothing may open connections
	# into a sandbox through the host.
	chain forward {{
		type filter hook forward priority filter; policy accept;
		iifname {hutch} oifname {hutch} drop
		iifname {hutch} accept
		oifname {hutch} ct state established,related accept
		oifname {hutch} drop
	}}

	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {base}/{prefix_len} oifname != {hutch} masquerade
	}}
}}
"#
    )
}

/// Script that removes the table, succeeding whether or not it exists.
pub(super) fn removal() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

/// Runs `nft -f -` with `script` on stdin.
pub(super) fn apply(script: &str) -> Result<(), NetError> {
    let nft = find_nft().ok_or(NetError::NftMissing)?;
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetError::NftMissing,
            _ => NetError::NftSpawn(e),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error (EPIPE) means nft exited early; its status and stderr below say why.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(NetError::NftSpawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::NftFailed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Locates the `nft` binary: `$PATH` first, then the sbin directories, which service managers
/// and `sudo`-less shells often leave out of `$PATH` although Debian installs nft there.
fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_is_self_replacing_and_scoped_to_the_pool() {
        let r = ruleset(Ipv4Addr::new(10, 231, 0, 0), 16);
        assert!(r.starts_with("table inet hutch {}\ndelete table inet hutch\n"));
        assert!(r.contains("ip saddr 10.231.0.0/16 oifname != \"hutch*\" masquerade"));
        assert!(r.contains("iifname \"hutch*\" oifname \"hutch*\" drop"));
        assert!(r.contains("reject with tcp reset"));
    }

    /// `nft -c` parses and validates against the kernel without committing anything.
    #[test]
    fn ruleset_passes_nft_check_mode() {
        let Some(nft) = find_nft() else {
            eprintln!("nft not installed; skipping");
            return;
        };
        let mut child = Command::new(nft)
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset(Ipv4Addr::new(10, 231, 0, 0), 16).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
