//! Starting kernel processes.
//!
//! A kernel gets four extra descriptors (fd 3 commands, fd 4 events, fd 5/6 the read ends of its
//! own stdout/stderr pipes), its own session (so SIGINT and SIGKILL reach everything it started),
//! a raised OOM score (it dies before the agent), and `PR_SET_PDEATHSIG` so it dies with the
//! agent: a restarted agent must not find an orphaned kernel it does not know about.
//!
//! The death signal fires when the *thread* that forked exits, not the process. Tokio may retire
//! threads (blocking-pool threads, or a worker handed over by `block_in_place`), so kernels are
//! forked from one dedicated thread that lives as long as the agent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The first descriptor number the protocol uses in the kernel.
const FIRST_FD: RawFd = 3;

type Job = (Command, oneshot::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Option<std_mpsc::Sender<Job>>> = OnceLock::new();

/// The long-lived thread that forks kernels, started on first use inside the runtime.
fn spawner() -> Option<&'static std_mpsc::Sender<Job>> {
    SPAWNER
        .get_or_init(|| {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = std_mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("hutch-kernel-fork".into())
                .spawn(move || {
                    let _guard = handle.enter();
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

/// Spawns `cmd` from the spawner thread (or inline if it cannot exist).
async fn spawn_on_thread(mut cmd: Command) -> io::Result<Child> {
    let Some(tx) = spawner() else {
        return cmd.spawn();
    };
    let (reply, answer) = oneshot::channel();
    if let Err(std_mpsc::SendError((mut cmd, _))) = tx.send((cmd, reply)) {
        return cmd.spawn();
    }
    answer
        .await
        .unwrap_or_else(|_| Err(io::Error::other("kernel spawner thread is gone")))
}

/// The agent's ends of a started kernel's pipes.
pub(super) struct Spawned {
    /// The process.
    pub child: Child,
    /// Write end of the command pipe (the kernel's fd 3).
    pub commands: OwnedFd,
    /// Read end of the event pipe (the kernel's fd 4).
    pub events: OwnedFd,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A close-on-exec duplicate numbered 10 or higher, so that moving it onto fd 3..6 in the child
/// cannot overwrite another descriptor that is still to be moved.
fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the valid descriptor `fd` and returns a new one or -1.
    #[allow(unsafe_code)]
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is a descriptor fcntl just created for us; nothing else owns it.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Starts `program args` with the kernel descriptors, in `cwd`, with exactly `env`.
pub(super) async fn spawn_kernel(
    program: &std::path::Path,
    args: &[String],
    env: &[(String, String)],
    cwd: &str,
) -> io::Result<Spawned> {
    let (cmd_r, cmd_w) = pipe()?;
    let (evt_r, evt_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // Child-side descriptors in protocol order: fd 3, 4, 5, 6.
    let high = [
        dup_high(&cmd_r)?,
        dup_high(&evt_w)?,
        dup_high(&out_r)?,
        dup_high(&err_r)?,
    ];
    let raw: [RawFd; 4] = [
        high[0].as_raw_fd(),
        high[1].as_raw_fd(),
        high[2].as_raw_fd(),
        high[3].as_raw_fd(),
    ];
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(out_w))
        .stderr(std::process::Stdio::from(err_w))
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: setsid, prctl, getppid, dup2, open/write/close on a static path, _exit.
    // It allocates nothing; `raw` and `parent` are plain integers copied into the closure. The
    // descriptors in `raw` stay open in the parent until the spawn has returned.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                // The agent died between fork and prctl: nobody will ever talk to us.
                libc::_exit(1);
            }
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, FIRST_FD + i as RawFd) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            crate::process::raise_oom_score();
            Ok(())
        });
    }
    let child = spawn_on_thread(cmd).await?;
    // The child's copies are inherited; ours of the child-side ends close here.
    drop(high);
    drop((cmd_r, evt_w, out_r, err_r));
    Ok(Spawned {
        child,
        commands: cmd_w,
        events: evt_r,
    })
}

/// Sends `signal` to the process group led by `pid`.
pub(super) fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    if pid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}
