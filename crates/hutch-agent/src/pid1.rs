//! PID 1 of the sandbox: reap, forward, shut down.
//!
//! Single-threaded and tiny on purpose. It blocks every signal and handles them synchronously
//! with `sigtimedwait`, so there are no handlers to race with. The agent runs as its child; if the
//! agent dies unexpectedly it is started again (its listening socket is kept here), so a crash
//! never takes user processes down.
//!
//! The agent is started inside the sandbox's one Landlock domain, which every user process then
//! inherits: user processes can signal each other (a server started by one command can be killed
//! by the next) but never PID 1, which stays outside the domain. A user who kills the agent only
//! gets it restarted. SIGTERM (from the host's stop) is forwarded to the agent,
//! which stops its kernels; after a grace period everything left is SIGKILLed and PID 1 exits,
//! which ends the pid namespace.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hutch_runtime::security::ChildConfinement;
use hutch_runtime::sys;
use hutch_runtime::Pid1Context;
use hutch_types::AgentBoot;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long the agent gets to stop its kernels after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Agent restarts allowed within [`RESTART_WINDOW`] before PID 1 gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(30);

/// The sandbox's PID 1 (the runtime's `Pid1Entry`). Returns its exit code.
pub fn pid1_main(ctx: Pid1Context) -> i32 {
    let boot: AgentBoot = serde_json::from_value(ctx.boot).unwrap_or_default();
    let _ = sys::set_non_dumpable();
    let all = SigSet::all();
    if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None).is_err() {
        return 1;
    }
    let mut agent = match start_agent(&ctx.listener, &boot) {
        Ok(pid) => pid,
        Err(_) => return 1,
    };
    let mut restarts: Vec<Instant> = Vec::new();
    let mut deadline: Option<Instant> = None;

    let mut wanted = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        wanted.add(s);
    }
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match wait_signal(&wanted, Duration::from_millis(500)) {
            Some(libc::SIGCHLD) | None => {}
            Some(_) => {
                if deadline.is_none() {
                    let _ = kill(agent, Signal::SIGTERM);
                    deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
            }
        }
        // Reap everything that has exited: the agent and any orphan re-parented to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(agent) {
                        if deadline.is_some() {
                            return shutdown();
                        }
                        let now = Instant::now();
                        restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                        if restarts.len() >= MAX_RESTARTS {
                            eprintln!("hutch:[init] agent keeps dying; shutting the sandbox down");
                            return shutdown();
                        }
                        restarts.push(now);
                        eprintln!("hutch:[init] agent exited ({status:?}); restarting it");
                        agent = match start_agent(&ctx.listener, &boot) {
                            Ok(pid) => pid,
                            Err(_) => return shutdown(),
                        };
                    }
                }
            }
        }
    }
    shutdown()
}

/// SIGKILLs every other process in the pid namespace and reaps them.
fn shutdown() -> i32 {
    // From PID 1, kill(-1) reaches every process in the namespace except PID 1 itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match waitpid(Pid::from_raw(-1), None) {
            Err(nix::Error::ECHILD) => break,
            _ => continue,
        }
    }
    0
}

fn wait_signal(set: &SigSet, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: sigtimedwait reads the signal set and the timespec, both valid for the call, and
    // writes nothing because the siginfo pointer is null.
    #[allow(unsafe_code)]
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Puts this process (the agent, before it starts anything) into the sandbox's user domain.
fn enter_user_domain() -> Result<(), String> {
    let confinement = ChildConfinement::new().map_err(|e| e.to_string())?;
    confinement.apply_in_child().map_err(|e| e.to_string())
}

fn start_agent(listener: &OwnedFd, boot: &AgentBoot) -> nix::Result<Pid> {
    // SAFETY: PID 1 is single-threaded, so the child starts with a consistent copy of the
    // address space (no lock can be held by another thread) and may allocate and start a runtime.
    #[allow(unsafe_code)]
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            sys::set_process_name("hutch:[agent]");
            let _ = sys::set_non_dumpable();
            if let Err(e) = enter_user_domain() {
                eprintln!("hutch:[agent] cannot enter the Landlock domain: {e}");
                std::process::exit(1);
            }
            let fd = listener.as_raw_fd();
            let code = crate::server::run(fd, boot.clone());
            std::process::exit(code)
        }
    }
}
