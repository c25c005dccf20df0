//! The `/etc` files every sandbox root needs generated rather than inherited: the name it has
//! inside its UTS namespace, a `hosts` file that resolves it, and resolvers it can reach.
//!
//! Shared by the built-in template and built ones, so a sandbox behaves the same whichever root
//! it starts from. A Debian root made by `mmdebstrap` carries a copy of the *host's* hostname
//! and resolv.conf and no `hosts`; these replace them.

use std::fs;
use std::path::Path;

use super::files::replace_file;
use super::TemplateError;

/// The hostname every sandbox has (set by the runtime in its UTS namespace).
pub const HOSTNAME: &str = "sandbox";

/// `/etc/hostname`.
pub fn hostname() -> String {
    format!("{HOSTNAME}\n")
}

/// `/etc/hosts`: loopback names and the sandbox's own name.
pub fn hosts() -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{HOSTNAME}\n"
    )
}

/// The host's resolvers, unless they are loopback stubs the sandbox cannot reach; then the
/// upstream list systemd-resolved keeps.
pub fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let only_loopback = host
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .all(|ns| {
            let ns = ns.trim();
            ns.starts_with("127.") || ns == "::1"
        });
    if !only_loopback {
        return host;
    }
    fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or(host)
}

/// Writes `hostname`, `hosts` and `resolv.conf` into `etc` (mode 0644, owned by sandbox root),
/// replacing whatever is there — including a symlink, which is removed, never followed.
pub fn write_network_files(etc: &Path, uid_base: u32) -> Result<(), TemplateError> {
    for (name, content) in [
        ("hostname", hostname()),
        ("hosts", hosts()),
        ("resolv.conf", resolv_conf()),
    ] {
        replace_file(
            &etc.join(name),
            content.as_bytes(),
            0o644,
            uid_base,
            uid_base,
        )?;
    }
    Ok(())
}
