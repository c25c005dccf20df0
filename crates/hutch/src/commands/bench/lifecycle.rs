//! `hutch bench lifecycle`: create → run → kill through the native backend and the agent, next
//! to bare `bwrap` and bare `python3` measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hutch_client::AgentClient;
use hutch_runtime::template::ensure_builtin;
use hutch_runtime::{Backend, NativeBackend, SandboxSpec, TemplateRootfs};
use hutch_types::{AgentBoot, Resources, SandboxId};

use super::refs::{bwrap_argv, reference, BARE_PYTHON};
use super::scratch::{tempdir, SpawnerGuard};
use super::stats::{header, ms, row, Samples};
use super::WARMUP;
use crate::cli::LifecycleArgs;
use crate::setup;

pub fn run(args: LifecycleArgs) -> Result<()> {
    setup::require_root()?;
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => setup::data_dir(d)?,
        None => {
            tmp = tempdir("lifecycle")?;
            tmp.path.clone()
        }
    };
    let backend = setup::backend(&dir)?;
    // Whatever happens, stop the benchmark's spawner so nothing is left running.
    let _spawner = SpawnerGuard(backend.clone());
    let template = ensure_builtin(&dir.join("templates/builtin"), setup::UID_BASE)
        .context("cannot prepare the built-in template")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let n = args.iterations.max(1);
    eprintln!(
        "hutch bench lifecycle: {n} iterations each, network: {}",
        if args.internet {
            "internet (veth + NAT)"
        } else {
            "loopback only"
        }
    );

    let bench = Bench {
        backend: &backend,
        template,
        internet: args.internet,
    };
    let mut seq = 0usize;
    let mut phases = Phases::default();
    let mut cycle_true = Samples::default();
    let mut to_output = Samples::default();
    let mut cycle_python = Samples::default();
    for i in 0..WARMUP + n {
        let record = i >= WARMUP;
        let (total, p) = rt.block_on(bench.cycle(&mut seq, &["/bin/true"]))?;
        if record {
            cycle_true.push(total);
            phases.add(&p);
        }
        let (total, p) = rt.block_on(bench.cycle(&mut seq, &["python3", "-c", "print(1)"]))?;
        if record {
            cycle_python.push(total);
            to_output.push(p.create + p.run);
        }
    }
    // The server's create path: adopt a warm sandbox made ahead of time. Warm sandboxes are made
    // in untimed batches so their creation never overlaps a timed cycle.
    let mut pooled_cycle = Samples::default();
    let mut pooled_create = Samples::default();
    let mut pooled_python = Samples::default();
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(10);
        let mut warm = Vec::new();
        for _ in 0..2 * batch {
            warm.push(rt.block_on(bench.warm(&mut seq))?);
        }
        for pair in warm.chunks(2) {
            let (total, p) = rt.block_on(bench.adopt_cycle(&mut seq, &pair[0], &["/bin/true"]))?;
            pooled_cycle.push(total);
            pooled_create.push(p.create);
            let (_, p) =
                rt.block_on(bench.adopt_cycle(&mut seq, &pair[1], &["python3", "-c", "print(1)"]))?;
            pooled_python.push(p.create + p.run);
        }
        done += batch;
    }
    let bwrap_python = reference(n, &bwrap_argv(&["python3", "-c", "print(1)"]))?;
    let bwrap_true = reference(n, &bwrap_argv(&["/bin/true"]))?;
    let bare_python = reference(n, BARE_PYTHON)?;

    let table: [(&str, &Samples); 12] = [
        ("cold: create → /bin/true → kill", &cycle_true),
        ("  of which create (agent ready)", &phases.create),
        ("  of which run /bin/true via agent", &phases.run),
        ("  of which kill (nothing left)", &phases.kill),
        ("cold: create → python3 print(1) output", &to_output),
        ("cold: create → python3 print(1) → kill", &cycle_python),
        ("pooled: create → /bin/true → kill", &pooled_cycle),
        ("  of which create (adopt a warm sandbox)", &pooled_create),
        ("pooled: create → python3 print(1) output", &pooled_python),
        ("reference: bwrap --unshare-all /bin/true", &bwrap_true),
        ("reference: bwrap --unshare-all python3", &bwrap_python),
        ("reference: bare python3 -c 'print(1)'", &bare_python),
    ];
    println!("{}", header());
    for (name, samples) in table {
        println!("{}", row(name, samples));
    }
    let ratio = to_output.p50().as_secs_f64() / bwrap_python.p50().as_secs_f64();
    let pooled_ratio = pooled_python.p50().as_secs_f64() / bwrap_python.p50().as_secs_f64();
    println!();
    println!(
        "create→python output p50 / bare bwrap python p50: cold {ratio:.2}x, pooled \
         {pooled_ratio:.2}x (target ≤ 1.5x: {})",
        verdict(ratio.min(pooled_ratio) <= 1.5)
    );
    println!(
        "full cycle p50: cold {} ms, pooled {} ms (target < 10 ms: {})",
        ms(cycle_true.p50()),
        ms(pooled_cycle.p50()),
        verdict(cycle_true.p50().min(pooled_cycle.p50()) < Duration::from_millis(10))
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

#[derive(Default)]
struct Phases {
    create: Samples,
    run: Samples,
    kill: Samples,
}

struct Phase {
    create: Duration,
    run: Duration,
    kill: Duration,
}

impl Phases {
    fn add(&mut self, p: &Phase) {
        self.create.push(p.create);
        self.run.push(p.run);
        self.kill.push(p.kill);
    }
}

struct Bench<'a> {
    backend: &'a NativeBackend,
    template: TemplateRootfs,
    internet: bool,
}

impl Bench<'_> {
    /// One create → run `argv` → kill; returns the total and each phase.
    async fn cycle(&self, seq: &mut usize, argv: &[&str]) -> Result<(Duration, Phase)> {
        *seq += 1;
        let id = SandboxId::parse(&format!("bench-{}-{seq}", std::process::id()))?;
        let spec = self.spec(id.clone(), AgentBoot::default())?;
        let t0 = Instant::now();
        self.backend.create(&spec).context("create failed")?;
        let client = AgentClient::new(self.backend.agent_socket(&id));
        client.health(Duration::from_secs(10)).await?;
        self.run_and_kill(&id, &client, argv, t0).await
    }
}

impl Bench<'_> {
    fn spec(&self, id: SandboxId, boot: AgentBoot) -> Result<SandboxSpec> {
        Ok(SandboxSpec {
            id,
            template: self.template.clone(),
            resources: Resources::default(),
            internet: self.internet,
            boot: serde_json::to_value(boot)?,
        })
    }

    /// The timed tail every cycle shares: the sandbox is ready at the call, so that is the end
    /// of its create phase; then run `argv`, then kill.
    async fn run_and_kill(
        &self,
        id: &SandboxId,
        client: &AgentClient,
        argv: &[&str],
        t0: Instant,
    ) -> Result<(Duration, Phase)> {
        let t1 = Instant::now();
        let out = client.run(argv, Duration::from_secs(30)).await?;
        let t2 = Instant::now();
        if out.exit_code != 0 {
            bail!("{argv:?} failed in the sandbox: {}", out.stderr);
        }
        self.backend.kill(id).context("kill failed")?;
        let t3 = Instant::now();
        Ok((
            t3 - t0,
            Phase {
                create: t1 - t0,
                run: t2 - t1,
                kill: t3 - t2,
            },
        ))
    }

    /// A warm sandbox (loopback only, as the server's pool makes them), ready to be adopted.
    async fn warm(&self, seq: &mut usize) -> Result<SandboxId> {
        *seq += 1;
        let id = SandboxId::parse(&format!("warm-bench-{}-{seq}", std::process::id()))?;
        let mut spec = self.spec(id.clone(), AgentBoot::default())?;
        spec.internet = false;
        self.backend.create(&spec).context("warm create failed")?;
        AgentClient::new(self.backend.agent_socket(&id))
            .health(Duration::from_secs(10))
            .await?;
        Ok(id)
    }

    /// Adopt a warm sandbox (as the server's create does: rename, limits, network, agent boot
    /// update) → run `argv` → kill.
    async fn adopt_cycle(
        &self,
        seq: &mut usize,
        warm: &SandboxId,
        argv: &[&str],
    ) -> Result<(Duration, Phase)> {
        *seq += 1;
        let id = SandboxId::parse(&format!("bench-{}-{seq}", std::process::id()))?;
        let boot = AgentBoot {
            sandbox_id: id.to_string(),
            ..AgentBoot::default()
        };
        let spec = self.spec(id.clone(), boot.clone())?;
        let t0 = Instant::now();
        self.backend.adopt(warm, &spec).context("adopt failed")?;
        let client = AgentClient::new(self.backend.agent_socket(&id));
        let (status, _) = client
            .request(
                hutch_client::Method::POST,
                "/_hutch/boot",
                Some(serde_json::to_vec(&boot)?.into()),
                Duration::from_secs(10),
            )
            .await?;
        if !status.is_success() {
            bail!("boot update failed: {status}");
        }
        self.run_and_kill(&id, &client, argv, t0).await
    }
}
