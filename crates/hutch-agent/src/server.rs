//! The agent's HTTP server on the unix socket inherited from the sandbox's creator.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use hutch_types::AgentBoot;

use crate::api;
use crate::state::AgentState;

/// Runs the agent until SIGTERM; returns the process exit code.
pub fn run(listener_fd: RawFd, boot: AgentBoot) -> i32 {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUTCH_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hutch:[agent] cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(serve(listener_fd, boot))
}

async fn serve(listener_fd: RawFd, boot: AgentBoot) -> i32 {
    // Our own copy of the descriptor: PID 1 keeps the original to restart us with.
    // SAFETY: `listener_fd` is the listening socket PID 1 holds open for the agent's lifetime;
    // dup gives this process an independent descriptor that we then own.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::dup(listener_fd) };
    if fd < 0 {
        eprintln!(
            "hutch:[agent] cannot dup the listener: {}",
            std::io::Error::last_os_error()
        );
        return 1;
    }
    // SAFETY: `fd` was just returned by dup, is valid, and nothing else owns it.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    if let Err(e) = std_listener.set_nonblocking(true) {
        eprintln!("hutch:[agent] cannot set the listener non-blocking: {e}");
        return 1;
    }
    let listener = match tokio::net::UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hutch:[agent] cannot adopt the listener: {e}");
            return 1;
        }
    };
    let state = Arc::new(AgentState::new(boot));
    let app = api::router(state);
    tracing::info!("agent serving");
    let shutdown = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hutch:[agent] server error: {e}");
            1
        }
    }
}
