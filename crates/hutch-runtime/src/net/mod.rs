//! Sandbox networking: a network namespace per sandbox, veth + nftables NAT when internet is on.
//!
//! Every sandbox gets its own network namespace (created elsewhere with `CLONE_NEWNET`); this
//! module only configures it, given the pid of a process inside:
//!
//! - **internet off** ([`loopback_only`]): only `lo`, brought up. Nothing can leave.
//! - **internet on** ([`attach_internet`]): a veth pair, host end `hutch<slot>` in the host
//!   namespace and sandbox end `eth0`, on a private /30 carved from [`NetConfig`]'s pool
//!   (slot N uses `base + 4N`: host `.1`, sandbox `.2`), with a default route via the host end.
//!   The host's nftables table (see [`install_host_rules`]) NATs that traffic to the uplink and
//!   forbids everything else: sandbox→host, sandbox→sandbox, and unsolicited →sandbox.
//!
//! There is no allocation file or global lock: the host veth name *is* the slot lock. Creating
//! `hutch<slot>` with `NLM_F_EXCL` either succeeds (slot is ours until the link is deleted) or
//! fails with `EEXIST` (someone has it; try the next). The kernel arbitrates, so two servers, a
//! crashed server's leftovers and concurrent sandboxes can never be handed the same subnet.
//! When the sandbox's namespace dies, the kernel deletes the veth pair and so frees the slot.
//!
//! All calls are synchronous. All but [`SandboxNetns::connect_loopback`] (for the server; it
//! joins the one thread it starts) spawn no threads and leave none behind, so they are safe to
//! call from the single-threaded helper that later `clone()`s the sandbox. The caller must be
//! in the host (init) network namespace; sandbox-side configuration switches the calling thread
//! into the sandbox namespace only for the `socket(2)` call (see `netns.rs`).

mod netns;
mod nft;
mod nl;

use std::net::Ipv4Addr;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

pub use nl::NetlinkError;

use nl::Rtnl;

/// Host veth names are this prefix followed by the decimal slot number. The firewall matches
/// on `hutch*`, so nothing else on a host running hutch may use this prefix.
pub const HOST_IF_PREFIX: &str = "hutch";

/// Name of the sandbox end of the veth, inside the sandbox namespace.
pub const SANDBOX_IF: &str = "eth0";

/// Each sandbox gets a /30: network, host end, sandbox end, broadcast.
const LEASE_PREFIX_LEN: u8 = 30;

/// Where sandbox subnets come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// First address of the pool; must be aligned to `prefix_len`.
    pub base: Ipv4Addr,
    /// Size of the pool as a prefix length (the pool is `base/prefix_len`), at most 30.
    /// The default /16 gives 16384 sandboxes.
    pub prefix_len: u8,
}

impl Default for NetConfig {
    /// `10.231.0.0/16`: private, and far from the 10.0.x / 10.1.x ranges that home routers,
    /// Docker and cloud VPCs tend to use.
    fn default() -> Self {
        Self {
            base: Ipv4Addr::new(10, 231, 0, 0),
            prefix_len: 16,
        }
    }
}

/// The network a sandbox was given by [`attach_internet`]. Keep it to [`release`] the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLease {
    /// Index of the /30 within the pool.
    pub slot: u32,
    /// Host end of the veth, `hutch<slot>`.
    pub host_if: String,
    /// Address of the host end: the sandbox's default gateway.
    pub host_ip: Ipv4Addr,
    /// Address of the sandbox's `eth0`.
    pub sandbox_ip: Ipv4Addr,
    /// Prefix length of both addresses (always 30).
    pub prefix_len: u8,
}

/// Why a networking step failed. Each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The pool configuration is unusable.
    #[error("invalid network config: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// A pid that cannot name a process.
    #[error("invalid sandbox pid {pid}")]
    InvalidPid {
        /// The offending pid.
        pid: i32,
    },
    /// [`release`] was asked to delete something that is not a hutch host veth.
    #[error("refusing to delete interface {name:?}: not a hutch sandbox interface")]
    NotHutchInterface {
        /// The name given.
        name: String,
    },
    /// No `nft` binary on this host.
    #[error("the `nft` command was not found: install the `nftables` package")]
    NftMissing,
    /// `nft` could not be started or waited for.
    #[error("failed to run nft")]
    NftSpawn(#[source] std::io::Error),
    /// `nft` ran and rejected the ruleset.
    #[error("nft failed ({status}): {stderr}")]
    NftFailed {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Writing `/proc/sys/net/ipv4/ip_forward` failed.
    #[error("failed to enable net.ipv4.ip_forward")]
    IpForward(#[source] std::io::Error),
    /// `/proc/<pid>/ns/net` could not be opened (process gone, or not permitted).
    #[error("failed to open the network namespace of pid {pid}")]
    NetnsOpen {
        /// The sandbox pid.
        pid: i32,
        /// The open error.
        #[source]
        source: std::io::Error,
    },
    /// The calling thread's own namespace could not be saved before switching.
    #[error("failed to open the calling thread's network namespace")]
    NetnsSave(#[source] std::io::Error),
    /// `setns` into the sandbox namespace failed.
    #[error("failed to enter the network namespace of pid {pid}")]
    NetnsEnter {
        /// The sandbox pid.
        pid: i32,
        /// The setns error.
        #[source]
        source: nix::Error,
    },
    /// `setns` back to the original namespace failed. The calling thread is left in the
    /// sandbox's namespace and must not be used for host networking again.
    #[error("failed to return to the original network namespace (calling thread is stranded in the sandbox's)")]
    NetnsRestore(#[source] nix::Error),
    /// The short-lived thread that works inside a sandbox's namespace could not be started,
    /// or it panicked.
    #[error("failed to run a thread in a sandbox network namespace")]
    NetnsThread(#[source] std::io::Error),
    /// A netlink socket could not be opened.
    #[error("failed to open a netlink socket")]
    NetlinkSocket(#[source] std::io::Error),
    /// Creating the veth pair failed for a reason other than the name being taken.
    #[error("failed to create veth pair {name}/{SANDBOX_IF}")]
    CreateVeth {
        /// Host-side name attempted.
        name: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// The sandbox namespace already has an `eth0`, so the veth end cannot be named that.
    #[error("the network namespace of pid {pid} already has an {SANDBOX_IF}")]
    SandboxHasEth0 {
        /// The sandbox pid.
        pid: i32,
    },
    /// Every slot's veth name is taken.
    #[error("no free sandbox network slot: all {slots} {HOST_IF_PREFIX}<slot> names are in use")]
    SlotsExhausted {
        /// Size of the pool, in slots.
        slots: u32,
    },
    /// Looking an interface up failed.
    #[error("failed to look up interface {name}")]
    LinkLookup {
        /// The interface name.
        name: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// An interface we just created is not there.
    #[error("interface {name} disappeared during setup")]
    LinkMissing {
        /// The interface name.
        name: String,
    },
    /// Setting an interface up failed.
    #[error("failed to bring interface {name} up")]
    LinkUp {
        /// The interface name.
        name: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// Adding an address failed.
    #[error("failed to add address {addr} to {name}")]
    AddAddress {
        /// The interface name.
        name: String,
        /// The address.
        addr: Ipv4Addr,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// Adding the sandbox's default route failed.
    #[error("failed to add the default route via {gateway}")]
    AddRoute {
        /// The gateway.
        gateway: Ipv4Addr,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// Deleting an interface failed.
    #[error("failed to delete interface {name}")]
    DeleteLink {
        /// The interface name.
        name: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
}

/// A validated [`NetConfig`].
#[derive(Debug, Clone, Copy)]
struct Pool {
    base: u32,
    prefix_len: u8,
}

impl Pool {
    fn new(cfg: &NetConfig) -> Result<Self, NetError> {
        if cfg.prefix_len > LEASE_PREFIX_LEN {
            return Err(NetError::InvalidConfig {
                reason: format!(
                    "pool prefix /{} is smaller than one /{LEASE_PREFIX_LEN} sandbox subnet",
                    cfg.prefix_len
                ),
            });
        }
        let base = u32::from(cfg.base);
        let host_bits = u32::MAX.checked_shr(u32::from(cfg.prefix_len)).unwrap_or(0);
        if base & host_bits != 0 {
            return Err(NetError::InvalidConfig {
                reason: format!(
                    "pool base {} is not aligned to /{} (did you mean {}?)",
                    cfg.base,
                    cfg.prefix_len,
                    Ipv4Addr::from(base & !host_bits)
                ),
            });
        }
        Ok(Self {
            base,
            prefix_len: cfg.prefix_len,
        })
    }

    /// Number of /30s in the pool (at most 2^30, so slot names fit in IFNAMSIZ).
    fn slots(&self) -> u32 {
        1 << (LEASE_PREFIX_LEN - self.prefix_len)
    }

    /// The addresses of `slot`, which must be `< self.slots()`.
    fn lease(&self, slot: u32) -> NetLease {
        let net = self.base + (slot << 2);
        NetLease {
            slot,
            host_if: host_if_name(slot),
            host_ip: Ipv4Addr::from(net + 1),
            sandbox_ip: Ipv4Addr::from(net + 2),
            prefix_len: LEASE_PREFIX_LEN,
        }
    }
}

/// `hutch<slot>`: at most 5 + 10 digits = 15 bytes, the kernel's IFNAMSIZ limit.
fn host_if_name(slot: u32) -> String {
    format!("{HOST_IF_PREFIX}{slot}")
}

/// Whether `name` is something [`attach_internet`] could have created.
fn is_host_if_name(name: &str) -> bool {
    name.strip_prefix(HOST_IF_PREFIX).is_some_and(|digits| {
        !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Installs (or atomically replaces) the host's `inet hutch` nftables table and enables IPv4
/// forwarding. Call once per server start; idempotent and safe to race with another process
/// doing the same. Rules go in before forwarding is switched on so there is never a moment
/// where the host forwards sandbox traffic unfiltered.
pub fn install_host_rules(cfg: &NetConfig) -> Result<(), NetError> {
    let pool = Pool::new(cfg)?;
    nft::apply(&nft::ruleset(Ipv4Addr::from(pool.base), pool.prefix_len))?;
    enable_ip_forward()
}

/// Deletes the `inet hutch` table (no error if it is absent). Leaves `ip_forward` alone: other
/// software on the host may rely on it, and with the table gone no hutch NAT remains anyway.
pub fn remove_host_rules() -> Result<(), NetError> {
    nft::apply(&nft::removal())
}

fn enable_ip_forward() -> Result<(), NetError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    // Only write when needed: writing toggles per-interface forwarding defaults in the kernel,
    // which is a needless side effect when it is already on.
    if std::fs::read_to_string(PATH).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(PATH, "1\n").map_err(NetError::IpForward)
}

/// A sandbox's network namespace, held open: once open, later steps act on this namespace
/// even if its pid exits and is reused (check the process is still the sandbox's *after*
/// opening, and a reused pid can no longer redirect anything).
#[derive(Debug)]
pub struct SandboxNetns {
    file: std::fs::File,
    pid: i32,
}

impl SandboxNetns {
    /// Opens the network namespace of `sandbox_pid`.
    pub fn open(sandbox_pid: i32) -> Result<Self, NetError> {
        Ok(Self {
            file: netns::open_netns(sandbox_pid)?,
            pid: sandbox_pid,
        })
    }

    /// Opens a TCP connection to `port` on the sandbox's own loopback, from inside this
    /// namespace: what preview URLs are forwarded over. A service bound to the sandbox's
    /// 127.0.0.1 is reachable this way, and nothing in the host's namespace (its firewall, its
    /// loopback) is involved. `127.0.0.1` is tried first, then `[::1]` for services that bound
    /// only the IPv6 loopback.
    ///
    /// The outer error is about the namespace (the thread could not join it); the inner one is
    /// the connection's own (refused: nothing listens; timed out), for the caller to report as
    /// the service's state rather than a failure of hutch.
    pub fn connect_loopback(
        self,
        port: u16,
        timeout: std::time::Duration,
    ) -> Result<std::io::Result<std::net::TcpStream>, NetError> {
        use std::net::{Ipv6Addr, SocketAddr, TcpStream};
        netns::run_in(self.file, self.pid, move || {
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match TcpStream::connect_timeout(&v4, timeout) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                    // A refusal on ::1 (or no IPv6 at all) says nothing new: keep the v4 error.
                    TcpStream::connect_timeout(&v6, timeout).map_err(|_| e)
                }
                other => other,
            }
        })
    }
}

/// Internet off: brings up `lo` in the namespace of `sandbox_pid`, and nothing else.
pub fn loopback_only(sandbox_pid: i32) -> Result<(), NetError> {
    let ns = netns::open_netns(sandbox_pid)?;
    let mut sandbox = netns::rtnl_in(&ns, sandbox_pid)?;
    sandbox
        .set_up_by_name("lo")
        .map_err(|source| NetError::LinkUp {
            name: "lo".to_owned(),
            source,
        })
}

/// Internet on: claims the first free slot at or after `slot_hint` (wrapping around), creates
/// `hutch<slot>` ↔ `eth0` with the `eth0` end directly in the namespace of `sandbox_pid`,
/// addresses both ends, brings `lo` up and routes the sandbox's default via the host end.
///
/// On failure, whatever was created is deleted again. Traffic only flows as intended once
/// [`install_host_rules`] has run; without it the sandbox can reach the host but not beyond.
pub fn attach_internet(
    cfg: &NetConfig,
    sandbox_pid: i32,
    slot_hint: u32,
) -> Result<NetLease, NetError> {
    let pool = Pool::new(cfg)?;
    let ns = netns::open_netns(sandbox_pid)?;
    let mut sandbox = netns::rtnl_in(&ns, sandbox_pid)?;
    let mut host = Rtnl::open().map_err(NetError::NetlinkSocket)?;

    let slot = claim_slot(&mut host, &mut sandbox, &ns, &pool, sandbox_pid, slot_hint)?;
    let lease = pool.lease(slot);
    if let Err(err) = configure(&mut host, &mut sandbox, &lease) {
        // Deleting the host end deletes the pair, which also frees the slot.
        if let Err(cleanup) = host.delete_link(&lease.host_if) {
            tracing::warn!(
                host_if = %lease.host_if,
                error = %cleanup,
                "failed to delete veth after a failed sandbox network setup"
            );
        }
        return Err(err);
    }
    Ok(lease)
}

/// Creates the veth pair under the first free `hutch<slot>` name, starting at `slot_hint`.
fn claim_slot(
    host: &mut Rtnl,
    sandbox: &mut Rtnl,
    ns: &std::fs::File,
    pool: &Pool,
    pid: i32,
    slot_hint: u32,
) -> Result<u32, NetError> {
    use std::os::fd::AsFd;

    let slots = pool.slots();
    let start = slot_hint % slots;
    let mut eth0_checked = false;
    for i in 0..slots {
        // slots <= 2^30, so start + i < 2^31 cannot overflow.
        let slot = (start + i) % slots;
        let name = host_if_name(slot);
        match host.create_veth(&name, SANDBOX_IF, ns.as_fd()) {
            Ok(()) => return Ok(slot),
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                // EEXIST means either our host name is taken (the normal "slot in use" case)
                // or the sandbox already has an eth0. The latter never changes between
                // attempts, so ask once rather than burning through every slot.
                if !eth0_checked {
                    let existing =
                        sandbox
                            .link_index(SANDBOX_IF)
                            .map_err(|source| NetError::LinkLookup {
                                name: SANDBOX_IF.to_owned(),
                                source,
                            })?;
                    if existing.is_some() {
                        return Err(NetError::SandboxHasEth0 { pid });
                    }
                    eth0_checked = true;
                }
            }
            Err(source) => return Err(NetError::CreateVeth { name, source }),
        }
    }
    Err(NetError::SlotsExhausted { slots })
}

/// Brings up, addresses and routes a freshly created pair (the host end is already up).
fn configure(host: &mut Rtnl, sandbox: &mut Rtnl, lease: &NetLease) -> Result<(), NetError> {
    let host_idx = lookup(host, &lease.host_if)?;
    add_addr(host, host_idx, &lease.host_if, lease.host_ip)?;

    sandbox
        .set_up_by_name("lo")
        .map_err(|source| NetError::LinkUp {
            name: "lo".to_owned(),
            source,
        })?;
    let eth0 = lookup(sandbox, SANDBOX_IF)?;
    sandbox.set_up(eth0).map_err(|source| NetError::LinkUp {
        name: SANDBOX_IF.to_owned(),
        source,
    })?;
    add_addr(sandbox, eth0, SANDBOX_IF, lease.sandbox_ip)?;
    sandbox
        .add_default_route(lease.host_ip, eth0)
        .map_err(|source| NetError::AddRoute {
            gateway: lease.host_ip,
            source,
        })
}

fn lookup(rtnl: &mut Rtnl, name: &str) -> Result<u32, NetError> {
    rtnl.link_index(name)
        .map_err(|source| NetError::LinkLookup {
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(|| NetError::LinkMissing {
            name: name.to_owned(),
        })
}

fn add_addr(rtnl: &mut Rtnl, index: u32, name: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    rtnl.add_ipv4(index, addr, LEASE_PREFIX_LEN)
        .map_err(|source| NetError::AddAddress {
            name: name.to_owned(),
            addr,
            source,
        })
}

/// Deletes the host end `host_if` (which takes the sandbox end with it). `Ok` if it is already
/// gone, e.g. because the sandbox's namespace died first and the kernel removed the pair.
pub fn release(host_if: &str) -> Result<(), NetError> {
    if !is_host_if_name(host_if) {
        return Err(NetError::NotHutchInterface {
            name: host_if.to_owned(),
        });
    }
    let mut host = Rtnl::open().map_err(NetError::NetlinkSocket)?;
    host.delete_link(host_if)
        .map(drop)
        .map_err(|source| NetError::DeleteLink {
            name: host_if.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
