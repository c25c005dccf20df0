//! A small synchronous rtnetlink client: one `NETLINK_ROUTE` socket, one request in flight.
//!
//! Why not `rtnetlink`: its API is async, so every call would need a tokio runtime built and
//! torn down around it, and the caller is a single-threaded helper that later `clone()`s. A plain
//! blocking socket has no threads, no runtime and costs one `send` + one or two `recv` per step;
//! the whole sandbox setup is a handful of round trips (~tens of microseconds each).
//!
//! Requests are built with `netlink-packet-route` (the same crate `rtnetlink` uses underneath);
//! replies are read with just enough parsing to get the ack/errno and, for a link lookup, the
//! interface index. Full parsing of kernel replies would tie us to the crate knowing every
//! attribute the running kernel emits, which buys nothing here.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `RTM_NEWLINK`: the reply type of a `RTM_GETLINK` request.
const RTM_NEWLINK: u16 = 16;
/// `NLM_F_ACK_TLVS`: set on an error/ack message that carries extended-ack attributes.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLM_F_CAPPED`: the error message echoes only the request's header, not its body.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute holding the kernel's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Receive buffer size. Replies here are single messages of a few KiB at most (one link).
const RECV_BUF: usize = 64 * 1024;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket itself failed (send/recv).
    #[error("netlink socket i/o failed")]
    Io(#[source] io::Error),
    /// The kernel answered with a negative errno.
    #[error("kernel refused: {}{}", io::Error::from_raw_os_error(*errno), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Kernel {
        /// Positive errno value (e.g. `libc::EEXIST`).
        errno: i32,
        /// The kernel's extended-ack message, when it gave one.
        reason: Option<String>,
    },
    /// The kernel's reply could not be understood.
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

impl NetlinkError {
    /// The kernel errno, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// A blocking rtnetlink socket bound to the network namespace it was opened in (a netlink
/// socket talks to the netns that was current when `socket(2)` ran, wherever it is used later).
pub(super) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a route netlink socket in the calling thread's current network namespace.
    pub(super) fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Both are best-effort niceties (kernel >= 4.2 / 4.12): CAP_ACK keeps error replies
        // small, EXT_ACK makes the kernel say *why* it refused, which ends up in our errors.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        Ok(Self {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends one request with `NLM_F_ACK` and waits for its ack. If the request is a lookup,
    /// returns the interface index found in the first `RTM_NEWLINK` reply before the ack.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Option<u32>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        nl.header.sequence_number = seq;
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut out);
        self.sock.send(&out, 0).map_err(NetlinkError::Io)?;

        let mut found_index = None;
        loop {
            self.buf.clear();
            let n = loop {
                match self.sock.recv(&mut self.buf, 0) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NetlinkError::Io(e)),
                }
            };
            if n > self.buf.len() {
                return Err(NetlinkError::Malformed(format!(
                    "datagram of {n} bytes truncated to {}",
                    self.buf.len()
                )));
            }
            let mut off = 0;
            while off + NLMSG_HDRLEN <= self.buf.len() {
                let chunk = &self.buf[off..];
                let msg = NetlinkBuffer::new_checked(chunk)
                    .map_err(|e| NetlinkError::Malformed(e.to_string()))?;
                let len = msg.length() as usize;
                let (kind, flags, msg_seq) =
                    (msg.message_type(), msg.flags(), msg.sequence_number());
                let payload = msg.payload();
                off += (len + 3) & !3;
                if msg_seq != seq {
                    // A stale reply to an earlier request; cannot normally happen with one
                    // request in flight, but skipping is the correct reaction.
                    continue;
                }
                match kind {
                    NLMSG_ERROR => return ack_result(flags, payload).map(|()| found_index),
                    NLMSG_DONE => return Ok(found_index),
                    RTM_NEWLINK if found_index.is_none() => {
                        // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; ... }
                        let idx = payload
                            .get(4..8)
                            .ok_or_else(|| NetlinkError::Malformed("short ifinfomsg".to_owned()))?;
                        found_index = Some(u32::from_ne_bytes([idx[0], idx[1], idx[2], idx[3]]));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Creates a veth pair: `host` in this socket's netns and `peer` directly in the netns
    /// referred to by `peer_netns`. Only the host end is brought up.
    ///
    /// Doing it in one `RTM_NEWLINK` makes creation all-or-nothing: either both ends exist
    /// (already in place) or nothing does, so there is no intermediate state to clean up and
    /// no window where the peer sits in the host namespace. `NLM_F_EXCL` turns an existing
    /// `host` name into `EEXIST`, which is what makes the name a lock.
    pub(super) fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        // The peer cannot be created up: the kernel configures it before the pair is linked,
        // and opening a veth without a peer fails with ENOTCONN. The host end can.
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];

        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Looks a link up by name; `Ok(None)` if there is no such link.
    pub(super) fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(Some(idx)) => Ok(Some(idx)),
            Ok(None) => Err(NetlinkError::Malformed(format!(
                "no link message in the reply for {name:?}"
            ))),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a link administratively up, addressed by name (saves an index lookup).
    pub(super) fn set_up_by_name(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Sets link `index` administratively up.
    pub(super) fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Adds `addr/prefix_len` (with the matching broadcast address) to link `index`.
    pub(super) fn add_ipv4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
        let brd = Ipv4Addr::from(u32::from(addr) | host_bits);
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
            AddressAttribute::Broadcast(brd),
        ];
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds an IPv4 default route via `gateway` out of link `oif` in the main table.
    pub(super) fn add_default_route(
        &mut self,
        gateway: Ipv4Addr,
        oif: u32,
    ) -> Result<(), NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(oif),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Deletes a link by name. Returns `Ok(false)` if it did not exist.
    pub(super) fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Interprets an `NLMSG_ERROR` payload: `struct nlmsgerr { int error; struct nlmsghdr msg; }`
/// followed (with `NLM_F_ACK_TLVS`, and our `NETLINK_CAP_ACK` meaning the request body is not
/// echoed) by extended-ack attributes.
fn ack_result(flags: u16, payload: &[u8]) -> Result<(), NetlinkError> {
    let code = payload
        .get(0..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| NetlinkError::Malformed("short nlmsgerr".to_owned()))?;
    if code == 0 {
        return Ok(());
    }
    let reason = if flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request is its header alone when capped, else the whole request.
        let echoed = if flags & NLM_F_CAPPED != 0 {
            Some(NLMSG_HDRLEN)
        } else {
            payload
                .get(4..8)
                .map(|b| (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize + 3) & !3)
        };
        echoed
            .and_then(|echoed| payload.get(4 + echoed..))
            .and_then(ext_ack_message)
    } else {
        None
    };
    Err(NetlinkError::Kernel {
        errno: code.saturating_neg(),
        reason,
    })
}

/// Finds the `NLMSGERR_ATTR_MSG` string among netlink attributes (`u16 len, u16 type, data`).
fn ext_ack_message(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let data = &attrs[4..len];
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            return Some(String::from_utf8_lossy(&data[..end]).into_owned());
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_with_zero_code_is_ok() {
        assert!(ack_result(0, &0i32.to_ne_bytes()).is_ok());
    }

    #[test]
    fn nack_carries_errno_and_ext_ack_reason() {
        let mut p = (-libc::EEXIST).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let text = b"link exists\0";
        let len = 4 + text.len();
        p.extend_from_slice(&(len as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(text);
        let err = ack_result(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EEXIST));
        let shown = err.to_string();
        assert!(shown.contains("File exists"), "{shown}");
        assert!(shown.contains("(link exists)"), "{shown}");
    }

    #[test]
    fn short_error_payload_is_malformed() {
        assert!(matches!(
            ack_result(0, &[1, 2]),
            Err(NetlinkError::Malformed(_))
        ));
    }
}
