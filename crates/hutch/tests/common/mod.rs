//! Test harness: real sandboxes on the native backend, talked to through their agent sockets,
//! with leak checks. Every `TestEnv` has its own data directory and cgroup instance, so tests run
//! in parallel without touching each other.
#![allow(dead_code)]
// Test helpers: a failed unwrap is a failed test, with the panic message as the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hutch_client::{AgentClient, CommandOutput};
use hutch_runtime::template::ensure_builtin;
use hutch_runtime::{Backend, NativeBackend, NativeConfig, SandboxSpec, TemplateRootfs};
use hutch_types::{AgentBoot, Resources, SandboxId};
use hyper::{Method, StatusCode};
use serde_json::Value;

/// Host uid of sandbox root in tests (the same as the server's).
pub const UID_BASE: u32 = 100_000;

/// A data directory, a backend and the built-in template.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub backend: NativeBackend,
    pub template: TemplateRootfs,
    pub instance: String,
    seq: std::sync::atomic::AtomicUsize,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hutch-test-")
            .tempdir()
            .expect("temp dir");
        let instance = format!(
            "t{}",
            &dir.path().file_name().unwrap().to_string_lossy()[11..]
        );
        let instance = instance
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let backend = NativeBackend::new(NativeConfig {
            data_dir: dir.path().to_path_buf(),
            helper_exe: env!("CARGO_BIN_EXE_hutch").into(),
            helper_args: vec!["__spawner".into()],
            uid_base: UID_BASE,
            net: Default::default(),
            instance: instance.clone(),
        })
        .expect("backend");
        let template =
            ensure_builtin(&dir.path().join("templates/builtin"), UID_BASE).expect("template");
        Self {
            dir,
            backend,
            template,
            instance,
            seq: Default::default(),
        }
    }

    fn next_id(&self) -> SandboxId {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SandboxId::parse(&format!("{}-{n}", self.instance)).unwrap()
    }

    pub fn spec(&self) -> SandboxSpec {
        SandboxSpec {
            id: self.next_id(),
            template: self.template.clone(),
            resources: Resources::default(),
            internet: false,
            boot: serde_json::to_value(AgentBoot::default()).unwrap(),
        }
    }

    /// A running sandbox with default settings.
    pub async fn sandbox(&self) -> Sandbox<'_> {
        self.sandbox_with(|_| {}).await
    }

    /// A running sandbox after `f` adjusted its spec.
    pub async fn sandbox_with(&self, f: impl FnOnce(&mut SandboxSpec)) -> Sandbox<'_> {
        let mut spec = self.spec();
        f(&mut spec);
        self.backend.create(&spec).expect("create sandbox");
        let agent = AgentClient::new(self.backend.agent_socket(&spec.id));
        agent
            .health(Duration::from_secs(10))
            .await
            .expect("agent healthy");
        Sandbox {
            env: self,
            id: spec.id,
            agent,
        }
    }

    pub fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.dir.path().join("sandboxes").join(id.as_str())
    }

    /// The backend's own record of a sandbox.
    pub fn state(&self, id: &SandboxId) -> Value {
        let bytes = std::fs::read(self.sandbox_dir(id).join("state.json")).expect("state.json");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// cgroup directories of a sandbox, in every hierarchy, whether or not they exist: the ones
    /// its state records, or for a sandbox that never ran, the ones its id would get.
    pub fn cgroup_dirs(&self, id: &SandboxId) -> Vec<PathBuf> {
        let recorded: Vec<PathBuf> = std::fs::read(self.sandbox_dir(id).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|st| st["process"]["cgroup_dirs"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.as_str().map(PathBuf::from))
            .collect();
        if !recorded.is_empty() {
            return recorded;
        }
        let layout = hutch_runtime::cgroup::CgroupLayout::detect().unwrap();
        layout
            .hierarchies()
            .iter()
            .map(|h| {
                h.own
                    .join(format!("hutch-{}", self.instance))
                    .join(id.as_str())
            })
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Ok(ids) = self.backend.list() {
            for id in ids {
                let _ = self.backend.kill(&id);
            }
        }
        // The spawner is this test process's child: stop and reap it, leaving nothing running.
        let _ = self.backend.shutdown_spawner();
    }
}

/// A running sandbox.
pub struct Sandbox<'a> {
    pub env: &'a TestEnv,
    pub id: SandboxId,
    pub agent: AgentClient,
}

/// What must be gone after a kill.
pub struct Traces {
    pub id: SandboxId,
    pub pid: i32,
    pub host_if: Option<String>,
    pub dir: PathBuf,
    pub cgroups: Vec<PathBuf>,
}

impl Sandbox<'_> {
    /// Runs a bash script; returns its output (any exit code).
    pub async fn sh(&self, script: &str) -> CommandOutput {
        self.agent
            .run(&["bash", "-c", script], Duration::from_secs(60))
            .await
            .expect("command ran")
    }

    /// Runs a Python script with the sandbox's python3.
    pub async fn py(&self, code: &str) -> CommandOutput {
        self.agent
            .run(&["python3", "-c", code], Duration::from_secs(60))
            .await
            .expect("python ran")
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, bytes) = self
            .agent
            .request(method, path, body, Duration::from_secs(60))
            .await
            .expect("agent request");
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    /// A WebSocket to the agent over its unix socket.
    pub async fn ws(
        &self,
        path: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
        let stream = tokio::net::UnixStream::connect(self.agent.socket())
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://agent{path}"), stream)
            .await
            .expect("websocket handshake");
        ws
    }

    /// PID 1 of the sandbox as the host sees it.
    pub fn pid1(&self) -> i32 {
        self.env.state(&self.id)["process"]["pid"]
            .as_i64()
            .expect("running") as i32
    }

    /// Everything the kill must remove.
    pub fn traces(&self) -> Traces {
        let st = self.env.state(&self.id);
        Traces {
            id: self.id.clone(),
            pid: st["process"]["pid"].as_i64().unwrap_or(0) as i32,
            host_if: st["process"]["lease"]["host_if"]
                .as_str()
                .map(str::to_string),
            dir: self.env.sandbox_dir(&self.id),
            cgroups: self.env.cgroup_dirs(&self.id),
        }
    }

    /// Kills the sandbox and checks that nothing of it is left.
    pub fn kill_and_check(self) {
        let traces = self.traces();
        self.env.backend.kill(&self.id).expect("kill");
        assert_no_leaks(&traces);
    }
}

/// Asserts no process, mount, cgroup, veth or file of a killed sandbox remains.
pub fn assert_no_leaks(t: &Traces) {
    assert!(!t.dir.exists(), "sandbox dir {} left", t.dir.display());
    for cg in &t.cgroups {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = t.dir.to_string_lossy().to_string();
    assert!(
        !mountinfo.contains(&needle),
        "host mount table mentions {needle}"
    );
    if t.pid > 0 {
        assert!(
            !Path::new(&format!("/proc/{}", t.pid)).exists(),
            "sandbox PID 1 ({}) still exists (not killed or not reaped)",
            t.pid
        );
    }
    if let Some(host_if) = &t.host_if {
        // The host end of the veth is deleted in the background after a kill.
        let start = std::time::Instant::now();
        loop {
            let links = std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap();
            let links = String::from_utf8_lossy(&links.stdout).into_owned();
            let present =
                links.contains(&format!(" {host_if}@")) || links.contains(&format!(" {host_if}:"));
            if !present {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "veth {host_if} left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // No process anywhere on the host is still in the sandbox's cgroups or pid namespace: the
    // cgroup directories are gone (checked above), which the kernel refuses while populated.
}
