//! The typed protocol between the intermediate (parent) and the sandbox init (child).
//!
//! One `Message` enum over a SOCK_SEQPACKET socketpair (one message per datagram), and role
//! types with one method per protocol step, so neither side can send out of turn.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Longest a step may take before the other side gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// Parent → child: the network namespace is configured.
    NetworkReady,
    /// Child → parent: the user namespace exists; write its uid/gid maps.
    UsernsCreated,
    /// Parent → child: the maps are written.
    MapsWritten,
    /// Child → parent: set-up finished; PID 1 starts now.
    Ready,
    /// Child → parent: set-up failed at `step`.
    Failed { step: String, error: String },
}

/// A protocol failure, phrased for the create error the user sees.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChannelError {
    #[error("socketpair failed")]
    Socketpair(#[source] nix::Error),
    #[error("{0} failed")]
    Io(&'static str, #[source] nix::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("the sandbox init exited while the parent waited for {0}")]
    Closed(&'static str),
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    /// The child reported its own failure.
    #[error("{step}: {error}")]
    ChildFailed { step: String, error: String },
}

struct End(OwnedFd);

impl End {
    fn send(&self, m: &Message) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(m).unwrap_or_default();
        send(self.0.as_raw_fd(), &bytes, MsgFlags::empty())
            .map(drop)
            .map_err(|e| ChannelError::Io("send", e))
    }

    fn recv(&self, waiting_for: &'static str) -> Result<Message, ChannelError> {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(STEP_TIMEOUT).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, timeout) {
                Ok(0) => return Err(ChannelError::Timeout(waiting_for)),
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(ChannelError::Io("poll", e)),
            }
        }
        let mut buf = [0u8; 8192];
        let n = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| ChannelError::Io("recv", e))?;
        if n == 0 {
            return Err(ChannelError::Closed(waiting_for));
        }
        serde_json::from_slice(&buf[..n]).map_err(|e| ChannelError::Unexpected {
            expected: waiting_for,
            got: e.to_string(),
        })
    }

    fn expect(&self, expected: &'static str, ok: fn(&Message) -> bool) -> Result<(), ChannelError> {
        match self.recv(expected)? {
            m if ok(&m) => Ok(()),
            Message::Failed { step, error } => Err(ChannelError::ChildFailed { step, error }),
            m => Err(ChannelError::Unexpected {
                expected,
                got: format!("{m:?}"),
            }),
        }
    }
}

/// The intermediate's end.
pub(super) struct ParentEnd(End);
/// The sandbox init's end.
pub(super) struct ChildEnd(End);

/// Creates both ends (close-on-exec; each side drops the other's end right after clone).
pub(super) fn pair() -> Result<(ParentEnd, ChildEnd), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Socketpair)?;
    Ok((ParentEnd(End(a)), ChildEnd(End(b))))
}

impl ParentEnd {
    pub fn network_ready(&self) -> Result<(), ChannelError> {
        self.0.send(&Message::NetworkReady)
    }
    pub fn wait_userns(&self) -> Result<(), ChannelError> {
        self.0.expect("the user namespace", |m| {
            matches!(m, Message::UsernsCreated)
        })
    }
    pub fn maps_written(&self) -> Result<(), ChannelError> {
        self.0.send(&Message::MapsWritten)
    }
    pub fn wait_ready(&self) -> Result<(), ChannelError> {
        self.0
            .expect("the sandbox to be ready", |m| matches!(m, Message::Ready))
    }
}

impl ChildEnd {
    /// The descriptor, so the child can keep it while closing everything else.
    pub fn raw_fd(&self) -> i32 {
        self.0 .0.as_raw_fd()
    }

    pub fn wait_network(&self) -> Result<(), ChannelError> {
        self.0
            .expect("the network", |m| matches!(m, Message::NetworkReady))
    }
    pub fn userns_created(&self) -> Result<(), ChannelError> {
        self.0.send(&Message::UsernsCreated)
    }
    pub fn wait_maps(&self) -> Result<(), ChannelError> {
        self.0
            .expect("the uid maps", |m| matches!(m, Message::MapsWritten))
    }
    pub fn ready(self) -> Result<(), ChannelError> {
        self.0.send(&Message::Ready)
    }
    pub fn failed(&self, step: &str, error: &str) {
        let _ = self.0.send(&Message::Failed {
            step: step.to_string(),
            error: error.to_string(),
        });
    }
}
