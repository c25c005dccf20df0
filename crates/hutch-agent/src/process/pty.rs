//! Pseudo-terminals for the `/terminal` WebSocket (`spec` §10.2).
//!
//! The master is opened from the sandbox's private devpts (`/dev/ptmx` → `pts/ptmx`) with
//! `O_CLOEXEC`, so no process started concurrently inherits it (an inherited master would keep
//! the terminal alive after its shell ended). The slave is obtained with `TIOCGPTPEER`, which
//! needs no path lookup, and becomes the shell's controlling terminal in `pre_exec`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use tokio::io::unix::AsyncFd;
use tokio::process::Command;

/// Why a terminal cannot be opened or driven.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// Opening `/dev/ptmx` failed.
    #[error("cannot open /dev/ptmx: {0}")]
    Open(#[source] std::io::Error),
    /// An ioctl on the master failed.
    #[error("{op} on the terminal failed: {source}")]
    Ioctl {
        /// Which request.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Registering the master with the runtime failed.
    #[error("cannot poll the terminal: {0}")]
    Poll(#[source] std::io::Error),
}

/// The agent's side of a terminal.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<File>,
}

impl PtyMaster {
    /// Opens a new terminal of `cols` × `rows`; returns the master and the slave to hand to
    /// the shell (as its stdin, stdout and stderr).
    pub fn open(cols: u16, rows: u16) -> Result<(Self, OwnedFd), PtyError> {
        // std opens with O_CLOEXEC.
        let master = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open("/dev/ptmx")
            .map_err(PtyError::Open)?;
        unlock(&master)?;
        let slave = open_peer(&master)?;
        set_size(&master, cols, rows)?;
        let fd = register(master)?;
        Ok((Self { fd }, slave))
    }

    /// Sets the window size; the kernel sends SIGWINCH to the terminal's foreground group.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), PtyError> {
        set_size(self.fd.get_ref(), cols, rows)
    }

    /// Reads what the programs wrote; `Ok(0)` once no process holds the slave any more (Linux
    /// reports that as `EIO`).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                let mut f: &File = inner.get_ref();
                f.read(buf)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` as terminal input, waiting while the input queue is full.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                let mut f: &File = inner.get_ref();
                f.write(data)
            }) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Makes the child's stdin (the slave, already placed by std before `pre_exec` callbacks run)
/// its controlling terminal. Must be registered after [`crate::process::command`]'s `setsid`:
/// only a session leader without a terminal can acquire one.
pub fn make_controlling_terminal(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec in the child of a multi-threaded process;
    // it makes one async-signal-safe call (ioctl) on fd 0, allocates nothing and touches no
    // locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn register(master: File) -> Result<AsyncFd<File>, PtyError> {
    // SAFETY: the `File` owns its descriptor, always returns the same one from `as_raw_fd`, and
    // keeps it open until it is dropped, which only happens when the `AsyncFd` drops it.
    unsafe { AsyncFd::register(master) }.map_err(|e| PtyError::Poll(e.into()))
}

#[allow(unsafe_code)]
fn unlock(master: &File) -> Result<(), PtyError> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    if r == -1 {
        return Err(PtyError::Ioctl {
            op: "TIOCSPTLCK",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[allow(unsafe_code)]
fn open_peer(master: &File) -> Result<OwnedFd, PtyError> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags as an integer argument and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(PtyError::Ioctl {
            op: "TIOCGPTPEER",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the ioctl just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn set_size(master: &File, cols: u16, rows: u16) -> Result<(), PtyError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r == -1 {
        return Err(PtyError::Ioctl {
            op: "TIOCSWINSZ",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Decodes a byte stream as UTF-8 across chunk boundaries: a character split between two reads
/// is kept for the next one; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes what is complete after appending `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.pending.len());
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let leftover = rest.to_vec();
        self.pending = leftover;
        out
    }

    /// Whatever incomplete sequence is left, replaced.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks() {
        let mut d = Utf8Decoder::default();
        let s = "héllo €".as_bytes();
        let mut out = String::new();
        for b in s {
            out.push_str(&d.push(std::slice::from_ref(b)));
        }
        out.push_str(&d.finish());
        assert_eq!(out, "héllo €");
    }

    #[test]
    fn utf8_invalid_bytes_replaced() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push(b"\xe2\x82"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
