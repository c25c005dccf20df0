//! `hutch serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hutch_server::{AppState, ServerConfig};

use crate::cli::ServeArgs;
use crate::setup;

pub fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .init();
    setup::require_root()?;
    let data_dir = setup::data_dir(&args.data_dir)?;
    let (api_key, generated) = setup::api_key(&data_dir, args.api_key)?;
    let public_url = args.public_url.unwrap_or_else(|| {
        let ip = if args.listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            args.listen.ip().to_string()
        };
        format!("http://{ip}:{}", args.listen.port())
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let manager = setup::manager(&data_dir, setup::backend(&data_dir)?, args.pool_size)?;
        let recovered = manager.recover().await.context("cannot reconcile sandboxes")?;
        tracing::info!(?recovered, "sandboxes reconciled");
        manager.refill_pool();
        let _reaper = manager.spawn_reaper(Duration::from_secs(1));
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr().context("cannot read the listening address")?;
        // The server's own API, for the tools behind /mcp: loopback, whatever the listen address.
        let loopback_url = match local.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => format!("http://[::1]:{}", local.port()),
            ip if ip.is_unspecified() => format!("http://127.0.0.1:{}", local.port()),
            std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", local.port()),
            std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", local.port()),
        };
        let state = Arc::new(AppState {
            manager,
            config: ServerConfig {
                api_key: api_key.clone(),
                public_url: public_url.clone(),
                loopback_url,
            },
        });
        eprintln!("hutch {} listening on {public_url}", env!("CARGO_PKG_VERSION"));
        eprintln!("data directory: {}", data_dir.display());
        if generated {
            eprintln!(
                "generated API key (saved in {}/api_key): {api_key}",
                data_dir.display()
            );
        }
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("shutting down; sandboxes keep running");
        };
        hutch_server::serve(listener, state, shutdown)
            .await
            .context("server failed")
    })
}
