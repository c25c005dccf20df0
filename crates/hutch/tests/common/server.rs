//! A real `hutch serve` on loopback, with its own data directory and spawner.
//!
//! The test process starts the data directory's spawner itself, so the spawner (the parent and
//! reaper of every sandbox) is this process's child and survives server restarts within a test;
//! on drop every sandbox is purged and the spawner stopped and reaped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hutch_client::ControlClient;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

pub const API_KEY: &str = "test-key-123";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub port: u16,
    pub client: ControlClient,
    server: Option<Child>,
    spawner: Option<Child>,
    /// Extra environment of the server process (kept across restarts).
    envs: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_hutch")
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Like [`start`](Self::start), with extra environment variables for the server process.
    pub async fn start_with_env(envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hutch-srv-")
            .tempdir()
            .unwrap();
        let spawner = start_spawner(dir.path());
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut s = Self {
            client: ControlClient::new(&url, Some(API_KEY.into())).unwrap(),
            dir,
            url,
            port,
            server: None,
            spawner: Some(spawner),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.launch().await;
        s
    }

    /// Starts (or restarts) the server process on the same port and data directory.
    pub async fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(exe())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--data-dir",
                &self.dir.path().to_string_lossy(),
                "--api-key",
                API_KEY,
                "--log",
                "info,hutch=debug",
            ])
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let start = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _)) = self.client.json(Method::GET, "/health", None).await {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server process (SIGTERM, like a service manager); sandboxes keep running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// Kills the server process with SIGKILL (a crash).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a sandbox; returns (id, token, full body).
    pub async fn create(&self, body: Value) -> (String, String, Value) {
        let (status, v) = self
            .client
            .json(Method::POST, "/v1/sandboxes", Some(&body))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["auth_token"].as_str().unwrap().to_string(),
            v,
        )
    }

    /// An agent call through the gateway with a sandbox token.
    pub async fn agent(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = ControlClient::new(&self.url, None)
            .unwrap()
            .send(
                method,
                path,
                body.map(|b| bytes::Bytes::from(b.to_string())),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .unwrap();
        (r.status, r.json())
    }

    pub async fn run(&self, token: &str, cmd: &str) -> Value {
        let (status, v) = self
            .agent(
                token,
                Method::POST,
                "/commands/run",
                Some(json!({"command": "bash", "args": ["-c", cmd]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }
}

fn start_spawner(dir: &Path) -> Child {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let socket: PathBuf = run.join("spawner.sock");
    let child = Command::new(exe())
        .arg("__spawner")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "spawner did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        // Every sandbox, then the spawner (purge asks it to exit; we reap it).
        let _ = Command::new(exe())
            .args(["purge", "--data-dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut s) = self.spawner.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}
