//! `hutch bench exec`: code execution through the HTTP API, as the HopX SDK does it — an
//! in-process server on loopback, sandbox tokens through the gateway — next to bare `python3`
//! and bare `bwrap` running it in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hutch_client::{ControlClient, Method, StatusCode};
use hutch_manager::Manager;
use hutch_server::{AppState, ServerConfig};
use serde_json::{json, Value};

use super::refs::{bwrap_argv, reference, BARE_PYTHON};
use super::scratch::{tempdir, SpawnerGuard, TempDir};
use super::stats::{header, ms, row, Samples};
use super::WARMUP;
use crate::cli::ExecBenchArgs;
use crate::setup;

const API_KEY: &str = "bench";

pub fn run(args: ExecBenchArgs) -> Result<()> {
    setup::require_root()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let n = args.iterations.max(1);
    let rounds = args.round_trips.max(1);
    let burst = args.concurrency.max(1);
    eprintln!(
        "hutch bench exec: {rounds} round trips, {n} creates per mode, {burst} concurrent creates"
    );
    let results = rt.block_on(async {
        let mut r = Results::default();
        {
            let cold = BenchServer::start("cold", 0).await?;
            for i in 0..WARMUP + n {
                let t = cold.create_and_print().await?;
                if i >= WARMUP {
                    r.cold_first.push(t);
                }
            }
            r.round_trip = cold.round_trips(rounds).await?;
            (r.burst_cold, r.burst_cold_wall) = cold.burst(burst).await?;
            cold.stop().await;
        }
        {
            let pooled = BenchServer::start("pooled", args.pool_size).await?;
            for i in 0..WARMUP + n {
                // Steady state for sparse creates: a full, idle pool (a refill still running
                // would compete with the timed create for the CPUs).
                pooled.wait_for_pool(args.pool_size.max(1)).await?;
                let t = pooled.create_and_print().await?;
                if i >= WARMUP {
                    r.pooled_first.push(t);
                }
            }
            pooled.wait_for_pool(args.pool_size).await?;
            (r.burst_pooled, r.burst_pooled_wall) = pooled.burst(burst).await?;
            pooled.stop().await;
        }
        anyhow::Ok(r)
    })?;
    let bare = reference(n, BARE_PYTHON)?;
    let bwrap = reference(n, &bwrap_argv(&["python3", "-c", "print(1)"]))?;

    let r = results;
    println!("{}", header());
    let table: [(&str, &Samples); 8] = [
        ("warm run_code `1+1` round trip (HTTP)", &r.round_trip),
        ("cold: create → first python output (HTTP)", &r.cold_first),
        (
            "pooled: create → first python output (HTTP)",
            &r.pooled_first,
        ),
        ("burst, no pool: create + print(1), each", &r.burst_cold),
        ("burst, pooled: create + print(1), each", &r.burst_pooled),
        ("reference: bare python3 -c 'print(1)'", &bare),
        ("reference: bwrap --unshare-all python3", &bwrap),
        ("", &Samples::default()),
    ];
    for (name, samples) in table.iter().filter(|(name, _)| !name.is_empty()) {
        println!("{}", row(name, samples));
    }
    println!();
    println!(
        "{burst} concurrent creates each running print(1): wall {} ms without pool, {} ms with a \
         pool of {}",
        ms(r.burst_cold_wall),
        ms(r.burst_pooled_wall),
        args.pool_size
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "warm 1+1 p50 {} ms (target ≤ 2 ms: {})",
        ms(r.round_trip.p50()),
        verdict(r.round_trip.p50() <= Duration::from_millis(2))
    );
    let best = |a: &Samples, b: &Samples, q: f64| a.quantile(q).min(b.quantile(q));
    println!(
        "create → first output: cold p50 {} / p99 {} ms, pooled p50 {} / p99 {} ms \
         (target p50 ≤ 30 ms: {}, p99 ≤ 80 ms: {})",
        ms(r.cold_first.p50()),
        ms(r.cold_first.p99()),
        ms(r.pooled_first.p50()),
        ms(r.pooled_first.p99()),
        verdict(best(&r.cold_first, &r.pooled_first, 0.5) <= Duration::from_millis(30)),
        verdict(best(&r.cold_first, &r.pooled_first, 0.99) <= Duration::from_millis(80)),
    );
    Ok(())
}

#[derive(Default)]
struct Results {
    round_trip: Samples,
    cold_first: Samples,
    pooled_first: Samples,
    burst_cold: Samples,
    burst_cold_wall: Duration,
    burst_pooled: Samples,
    burst_pooled_wall: Duration,
}

/// A hutch server in this process, on a loopback port, with its own data dir and spawner.
struct BenchServer {
    manager: Arc<Manager>,
    client: ControlClient,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    // Dropped last: every sandbox removed and the spawner stopped, then the directory.
    _spawner: SpawnerGuard,
    _dir: TempDir,
}

impl BenchServer {
    async fn start(tag: &str, pool_size: usize) -> Result<Self> {
        let dir = tempdir(tag)?;
        let backend = setup::backend(&dir.path)?;
        let spawner = SpawnerGuard(backend.clone());
        let manager = setup::manager(&dir.path, backend, pool_size)?;
        manager.refill_pool();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(AppState {
            manager: manager.clone(),
            config: ServerConfig {
                api_key: API_KEY.into(),
                public_url: url.clone(),
                loopback_url: url.clone(),
            },
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = hutch_server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self {
            manager,
            client: ControlClient::new(&url, Some(API_KEY.into()))?,
            url,
            stop,
            task,
            _spawner: spawner,
            _dir: dir,
        })
    }

    async fn stop(self) {
        self.manager.drain_pool().await;
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Waits (untimed) until `n` warm sandboxes are ready.
    async fn wait_for_pool(&self, n: usize) -> Result<()> {
        let start = Instant::now();
        while self.manager.warm_count() < n {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the warm pool did not fill");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn create(&self) -> Result<(String, String)> {
        let (status, v) = self
            .client
            .json(
                Method::POST,
                "/v1/sandboxes",
                Some(&json!({"template_name": "code-interpreter", "internet_access": false})),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("create failed: {status} {v}");
        }
        let id = v["id"].as_str().context("no id")?.to_string();
        let token = v["auth_token"].as_str().context("no token")?.to_string();
        Ok((id, token))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.client
            .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await?;
        Ok(())
    }

    /// `POST /execute` through the gateway, as the SDK's `run_code` sends it.
    async fn execute(&self, token: &str, code: &str) -> Result<Value> {
        let body =
            json!({"code": code, "language": "python", "timeout": 60, "workdir": "/workspace"});
        let r = ControlClient::new(&self.url, None)?
            .send(
                Method::POST,
                "/execute",
                Some(body.to_string().into()),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await?;
        let v = r.json();
        if r.status != StatusCode::OK || v["success"] != true {
            bail!("execute failed: {} {v}", r.status);
        }
        Ok(v)
    }

    /// Create → `print(1)` output; returns the time to the output. The delete is not timed.
    async fn create_and_print(&self) -> Result<Duration> {
        let t = Instant::now();
        let (id, token) = self.create().await?;
        let out = self.execute(&token, "print(1)").await?;
        let took = t.elapsed();
        if out["stdout"] != "1\n" {
            bail!("unexpected output {out}");
        }
        self.delete(&id).await?;
        Ok(took)
    }

    /// Round trips of `1+1` on one warm sandbox.
    async fn round_trips(&self, rounds: usize) -> Result<Samples> {
        let (id, token) = self.create().await?;
        let mut s = Samples::default();
        for i in 0..WARMUP * 4 + rounds {
            let t = Instant::now();
            self.execute(&token, "1+1").await?;
            if i >= WARMUP * 4 {
                s.push(t.elapsed());
            }
        }
        self.delete(&id).await?;
        Ok(s)
    }

    /// `n` creates at once, each running `print(1)`; per-create times and the wall time.
    async fn burst(&self, n: usize) -> Result<(Samples, Duration)> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| async {
                let t = Instant::now();
                let (id, token) = self.create().await?;
                self.execute(&token, "print(1)").await?;
                anyhow::Ok((t.elapsed(), id.clone()))
            })
            .collect();
        let results = futures_util::future::join_all(tasks).await;
        let wall = start.elapsed();
        let mut s = Samples::default();
        let mut failure = None;
        for r in results {
            match r {
                Ok((t, id)) => {
                    s.push(t);
                    self.delete(&id).await?;
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(e.context("a create in the burst failed"));
        }
        Ok((s, wall))
    }
}
