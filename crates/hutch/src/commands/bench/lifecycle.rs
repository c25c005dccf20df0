//! `hutch bench lifecycle`: create → run → kill through the native backend and the agent, next
//! to bare `bwrap` and bare `python3` measured in the same run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hutch_client::AgentClient;
use hutch_runtime::template::ensure_builtin;
use hutch_runtime::{Backend, NativeBackend, SandboxSpec, TemplateRootfs};
use hutch_types::{AgentBoot, Resources, SandboxId};

use super::stats::{header, ms, row, Samples};
use crate::cli::LifecycleArgs;
use crate::setup;

const WARMUP: usize = 5;

pub fn run(args: LifecycleArgs) -> Result<()> {
    setup::require_root()?;
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => setup::data_dir(d)?,
        None => {
            tmp = tempdir()?;
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
    let bwrap_python = reference(n, &bwrap_argv(&["python3", "-c", "print(1)"]))?;
    let bwrap_true = reference(n, &bwrap_argv(&["/bin/true"]))?;
    let bare_python = reference(n, &["/usr/bin/python3", "-c", "print(1)"])?;

    println!("{}", header());
    println!(
        "{}",
        row("hutch create → /bin/true → kill (full cycle)", &cycle_true)
    );
    println!("{}", row("  of which create (agent ready)", &phases.create));
    println!("{}", row("  of which run /bin/true via agent", &phases.run));
    println!("{}", row("  of which kill (nothing left)", &phases.kill));
    println!(
        "{}",
        row("hutch create → python3 print(1) output", &to_output)
    );
    println!(
        "{}",
        row("hutch create → python3 print(1) → kill", &cycle_python)
    );
    println!(
        "{}",
        row("reference: bwrap --unshare-all /bin/true", &bwrap_true)
    );
    println!(
        "{}",
        row("reference: bwrap --unshare-all python3", &bwrap_python)
    );
    println!(
        "{}",
        row("reference: bare python3 -c 'print(1)'", &bare_python)
    );
    let ratio = to_output.p50().as_secs_f64() / bwrap_python.p50().as_secs_f64();
    println!();
    println!(
        "create→python output p50 / bare bwrap python p50 = {ratio:.2}x (target ≤ 1.5x: {})",
        verdict(ratio <= 1.5)
    );
    println!(
        "full cycle p50 = {} ms (target < 10 ms: {})",
        ms(cycle_true.p50()),
        verdict(cycle_true.p50() < Duration::from_millis(10))
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
        let spec = SandboxSpec {
            id: id.clone(),
            template: self.template.clone(),
            resources: Resources::default(),
            internet: self.internet,
            boot: serde_json::to_value(AgentBoot::default())?,
        };
        let t0 = Instant::now();
        self.backend.create(&spec).context("create failed")?;
        let client = AgentClient::new(self.backend.agent_socket(&id));
        client.health(Duration::from_secs(10)).await?;
        let t1 = Instant::now();
        let out = client.run(argv, Duration::from_secs(30)).await?;
        let t2 = Instant::now();
        if out.exit_code != 0 {
            bail!("{argv:?} failed in the sandbox: {}", out.stderr);
        }
        self.backend.kill(&id).context("kill failed")?;
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
}

/// bwrap with every namespace unshared over the host's /usr, the same view hutch gives.
fn bwrap_argv<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ];
    v.extend_from_slice(cmd);
    v
}

fn reference(n: usize, argv: &[&str]) -> Result<Samples> {
    let mut s = Samples::default();
    for i in 0..WARMUP + n {
        let t = Instant::now();
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| {
                format!(
                    "cannot run {} (install it: apt-get install bubblewrap)",
                    argv[0]
                )
            })?;
        if !status.success() {
            bail!("reference {argv:?} failed: {status}");
        }
        if i >= WARMUP {
            s.push(t.elapsed());
        }
    }
    Ok(s)
}

struct SpawnerGuard(std::sync::Arc<NativeBackend>);

impl Drop for SpawnerGuard {
    fn drop(&mut self) {
        if let Ok(ids) = self.0.list() {
            for id in ids {
                let _ = self.0.kill(&id);
            }
        }
        let _ = self.0.shutdown_spawner();
    }
}

struct TempDir {
    path: std::path::PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempdir() -> Result<TempDir> {
    let path = std::env::temp_dir().join(format!("hutch-bench-{}", std::process::id()));
    setup::data_dir(&path)?;
    Ok(TempDir { path })
}
