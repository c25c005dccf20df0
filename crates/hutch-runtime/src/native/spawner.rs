//! The spawner: one long-lived, single-threaded process per data directory that creates every
//! sandbox and stays the parent of every sandbox init.
//!
//! Why a separate process: (1) the server is multi-threaded and must not clone sandbox inits
//! itself; (2) the init of a sandbox must have a parent that reaps it when it dies, and that
//! parent must outlive server restarts — on hosts whose PID 1 does not reap orphans (this kind of
//! machine), an init re-parented to PID 1 would stay a zombie forever; (3) forking a worker from
//! a small, already-running process is cheaper than exec'ing a helper for every create.
//!
//! It runs in its own session (terminal signals for the server do not reach it), as a child
//! subreaper: each request is read in the main loop, then a forked worker creates the sandbox
//! and exits; the sandbox's init is re-parented here and reaped when it ends. SIGTERM stops the
//! spawner; running sandboxes are unaffected (their inits move to the host's PID 1).
//!
//! Protocol: one request per connection, JSON, the client shuts down its write side; one JSON
//! reply, then the spawner closes.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::intermediate::{self, Pid1Entry};
use super::spawn::{SpawnReport, SpawnRequest};
use crate::error::RuntimeError;
use crate::sys;

/// Longest a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a create may take before the client gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Is it alive? Answers with its pid.
    Ping,
    /// Create a sandbox.
    Spawn(Box<SpawnRequest>),
    /// Exit (tests and `hutch purge`; sandboxes keep running).
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Pong { pid: i32 },
    Spawned(SpawnReport),
    Bye,
    Error(String),
}

/// Entry point of `hutch __spawner <socket>`.
pub fn spawner_main(socket: &Path, entry: Pid1Entry) -> i32 {
    sys::set_process_name("hutch:[spawner]");
    match run(socket, entry) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hutch:[spawner] {e}");
            1
        }
    }
}

fn run(socket: &Path, entry: Pid1Entry) -> Result<(), String> {
    // Own session: Ctrl-C on a foreground `hutch serve` must not reach the sandboxes' parent.
    let _ = nix::unistd::setsid();
    sys::set_child_subreaper().map_err(|e| format!("subreaper: {e}"))?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        mask.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", socket.display()))?;
    eprintln!(
        "hutch:[spawner] pid {} serving {}",
        std::process::id(),
        socket.display()
    );

    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let signals_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let conn_ready = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if signals_ready {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGTERM || signo == libc::SIGINT || signo == libc::SIGHUP {
                    eprintln!("hutch:[spawner] stopping on signal {signo}");
                    return Ok(());
                }
            }
            reap_all();
        }
        if conn_ready {
            if let Ok((conn, _)) = listener.accept() {
                if serve(conn, &mask, entry) {
                    return Ok(());
                }
            }
        }
    }
}

/// Reaps every child that has exited: workers and re-parented sandbox inits.
fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Handles one connection; returns true when asked to shut down.
fn serve(mut conn: UnixStream, mask: &SigSet, entry: Pid1Entry) -> bool {
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let mut buf = Vec::new();
    let request = match conn.read_to_end(&mut buf) {
        Ok(_) => serde_json::from_slice::<Request>(&buf).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match request {
        Ok(Request::Ping) => {
            reply(
                &mut conn,
                &Reply::Pong {
                    pid: std::process::id() as i32,
                },
            );
            false
        }
        Ok(Request::Shutdown) => {
            reply(&mut conn, &Reply::Bye);
            true
        }
        Ok(Request::Spawn(req)) => {
            // SAFETY: the spawner is single-threaded, so the child starts with a consistent copy
            // of the address space and may allocate.
            #[allow(unsafe_code)]
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let _ =
                        nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(mask), None);
                    sys::set_process_name("hutch:[worker]");
                    let report = intermediate::handle(*req, entry);
                    reply(&mut conn, &Reply::Spawned(report));
                    // SAFETY: _exit ends the worker without running the spawner's exit handlers.
                    #[allow(unsafe_code)]
                    unsafe {
                        libc::_exit(0)
                    }
                }
                Ok(ForkResult::Parent { .. }) => false,
                Err(e) => {
                    reply(&mut conn, &Reply::Error(format!("fork: {e}")));
                    false
                }
            }
        }
        Err(e) => {
            reply(&mut conn, &Reply::Error(format!("bad request: {e}")));
            false
        }
    }
}

fn reply(conn: &mut UnixStream, r: &Reply) {
    let bytes = serde_json::to_vec(r).unwrap_or_default();
    let _ = conn.write_all(&bytes);
}

/// The server side: finds or starts the spawner of a data directory and sends it requests.
#[derive(Debug)]
pub(super) struct SpawnerClient {
    socket: PathBuf,
    exe: PathBuf,
    /// Set when this process started the spawner (it can then wait for it on shutdown).
    child: std::sync::Mutex<Option<Child>>,
}

impl SpawnerClient {
    /// Connects to the running spawner or starts one (`<exe> __spawner <socket>`).
    pub fn ensure(run_dir: &Path, exe: &Path, args: &[String]) -> Result<Self, RuntimeError> {
        let socket = run_dir.join("spawner.sock");
        let me = Self {
            socket,
            exe: exe.to_path_buf(),
            child: std::sync::Mutex::new(None),
        };
        if me.ping().is_ok() {
            return Ok(me);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join("spawner.log"))
            .map_err(RuntimeError::io("open", run_dir.join("spawner.log")))?;
        let log_err = log
            .try_clone()
            .map_err(RuntimeError::io("open", run_dir.join("spawner.log")))?;
        let child = Command::new(exe)
            .args(args)
            .arg(&me.socket)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| me.err(format!("cannot start the spawner: {e}")))?;
        *me.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let start = Instant::now();
        loop {
            match me.ping() {
                Ok(_) => return Ok(me),
                Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn err(&self, message: String) -> RuntimeError {
        RuntimeError::Helper {
            exe: self.exe.clone(),
            message,
        }
    }

    fn call(&self, req: &Request, timeout: Duration) -> Result<Reply, RuntimeError> {
        let mut conn = UnixStream::connect(&self.socket)
            .map_err(|e| self.err(format!("spawner at {}: {e}", self.socket.display())))?;
        let bytes = serde_json::to_vec(req).map_err(|e| self.err(e.to_string()))?;
        conn.write_all(&bytes)
            .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
            .map_err(|e| self.err(format!("send: {e}")))?;
        let _ = conn.set_read_timeout(Some(timeout));
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf)
            .map_err(|e| self.err(format!("read reply: {e}")))?;
        serde_json::from_slice(&buf).map_err(|_| {
            self.err(format!(
                "no reply (the worker died?): {:?}",
                String::from_utf8_lossy(&buf)
            ))
        })
    }

    /// The spawner's pid, if it answers.
    pub fn ping(&self) -> Result<i32, RuntimeError> {
        match self.call(&Request::Ping, Duration::from_secs(2))? {
            Reply::Pong { pid } => Ok(pid),
            other => Err(self.err(format!("unexpected reply {other:?}"))),
        }
    }

    /// Creates a sandbox.
    pub fn spawn(&self, req: SpawnRequest) -> Result<SpawnReport, RuntimeError> {
        match self.call(&Request::Spawn(Box::new(req)), REPLY_TIMEOUT)? {
            Reply::Spawned(report) => Ok(report),
            Reply::Error(e) => Err(self.err(e)),
            other => Err(self.err(format!("unexpected reply {other:?}"))),
        }
    }

    /// Stops the spawner (running sandboxes are unaffected) and reaps it if we started it.
    pub fn shutdown(&self) -> Result<(), RuntimeError> {
        let r = self.call(&Request::Shutdown, Duration::from_secs(5));
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.wait();
        }
        r.map(drop)
    }
}
