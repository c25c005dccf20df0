//! `hutch template build` against a stand-in for the build API (`POST /v1/templates/builds`,
//! `GET /v1/templates/build/{id}/status`, `GET /v1/templates/build/{id}/logs?offset=N`): the
//! request it sends, the log streamed once and in order, the exit status and messages of a
//! finished, failed and refused build. The stand-in keeps the CLI's side testable whatever the
//! real server supports; `cli_sandboxes` runs the command against the real server too.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOG: &str = "step 1/3: FROM debian\nstep 2/3: RUN apt-get install -y cowsay\nunpacking cowsay…\nstep 3/3: COPY app /app\n";

#[derive(Default)]
struct Mock {
    /// Bodies of build requests.
    requests: Vec<Value>,
    /// Status polls so far.
    polls: usize,
    /// Whether the build fails.
    fail: bool,
}

/// Status and body for one request.
fn answer(
    m: &mut Mock,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    if key != Some("mock-key") {
        return (
            401,
            json!({"error": {"message": "invalid API key", "code": "UNAUTHORIZED"}}),
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("POST", "/v1/templates/builds") => {
            let req: Value = serde_json::from_slice(body).unwrap();
            m.requests.push(req.clone());
            if req["spec"].as_str().unwrap().contains("bogus") {
                return (
                    400,
                    json!({"error": {"message": "spec: unknown key `bogus` at line 1", "code": "VALIDATION_ERROR"}}),
                );
            }
            if req["name"] == "taken" && req["force"] == false {
                return (
                    409,
                    json!({"error": {"message": "template taken exists; use force to replace it", "code": "CONFLICT"}}),
                );
            }
            m.fail = req["name"] == "broken";
            (
                202,
                json!({"build_id": "b-1", "template_id": "t-9", "status": "building", "logs_url": "/v1/templates/build/b-1/logs"}),
            )
        }
        ("GET", "/v1/templates/build/b-1/status") => {
            m.polls += 1;
            let base = json!({"build_id": "b-1", "template_id": "t-9", "started_at": "2026-01-01T00:00:00Z"});
            let mut v = base.clone();
            let obj = v.as_object_mut().unwrap();
            match (m.polls, m.fail) {
                (1, _) => {
                    obj.insert("status".into(), json!("building"));
                    obj.insert("progress".into(), json!(30));
                    obj.insert(
                        "current_step".into(),
                        json!("RUN apt-get install -y cowsay"),
                    );
                }
                (_, true) => {
                    obj.insert("status".into(), json!("failed"));
                    obj.insert("progress".into(), json!(60));
                    obj.insert(
                        "current_step".into(),
                        json!("RUN apt-get install -y cowsay"),
                    );
                    obj.insert(
                        "error_message".into(),
                        json!("the command exited with status 100"),
                    );
                }
                (2, false) => {
                    obj.insert("status".into(), json!("building"));
                    obj.insert("progress".into(), json!(80));
                    obj.insert("current_step".into(), json!("COPY app /app"));
                }
                _ => {
                    obj.insert("status".into(), json!("active"));
                    obj.insert("progress".into(), json!(100));
                    obj.insert("build_duration_ms".into(), json!(4200));
                    obj.insert("completed_at".into(), json!("2026-01-01T00:00:04Z"));
                }
            }
            (200, v)
        }
        ("GET", "/v1/templates/build/b-1/logs") => {
            let offset: usize = query
                .strip_prefix("offset=")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            // The log grows with the polls: a third of it per poll.
            let visible = (LOG.len() * (m.polls + 1) / 3).min(LOG.len());
            let visible = (0..=visible)
                .rev()
                .find(|i| LOG.is_char_boundary(*i))
                .unwrap();
            let start = offset.min(visible);
            (
                200,
                json!({"logs": &LOG[start..visible], "offset": visible, "status": "building", "complete": visible == LOG.len()}),
            )
        }
        _ => (
            404,
            json!({"error": {"message": format!("no route {method} {path}"), "code": "NOT_FOUND"}}),
        ),
    }
}

async fn serve(listener: TcpListener, mock: Arc<Mutex<Mock>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mock = mock.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let head_end = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.lines();
            let mut first = lines.next().unwrap().split(' ');
            let (method, target) = (
                first.next().unwrap().to_string(),
                first.next().unwrap().to_string(),
            );
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let key = header("x-api-key");
            let (status, body) = answer(
                &mut mock.lock().unwrap(),
                &method,
                &target,
                key.as_deref(),
                &buf[head_end..head_end + len],
            );
            let body = body.to_string();
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn build(args: &[&str], spec: &str) -> (Out, Arc<Mutex<Mock>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mock = Arc::new(Mutex::new(Mock::default()));
    let server = tokio::spawn(serve(listener, mock.clone()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.toml"), spec).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hutch"));
    cmd.args(["template", "build"])
        .args(args)
        .args(["-f", "spec.toml", "--url", &url, "--api-key", "mock-key"])
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    server.abort();
    (
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        mock,
    )
}

const SPEC: &str = "from = \"debian:bookworm\"\n[[steps]]\nrun = \"apt-get install -y cowsay\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_build_is_followed_to_the_end() {
    let (out, mock) = build(&["cowsay"], SPEC).await;
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let req = mock.lock().unwrap().requests[0].clone();
    assert_eq!(req, json!({"name": "cowsay", "spec": SPEC, "force": false}));
    // Every log line once, in order, then the summary.
    let body: String = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("step ") || l.starts_with("unpacking"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(body, LOG, "{}", out.stdout);
    assert!(
        out.stdout.contains("built template cowsay (t-9) in 4.2 s"),
        "{}",
        out.stdout
    );
    // Without a terminal, the step changes are plain lines too.
    assert!(
        out.stderr.contains("RUN apt-get install -y cowsay"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("COPY app /app"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_build_names_the_step_and_the_reason() {
    let (out, _) = build(&["broken"], SPEC).await;
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(
            "hutch: template build failed at step RUN apt-get install -y cowsay: the command exited with status 100"
        ),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_builds_show_the_server_message() {
    let (out, _) = build(&["taken"], SPEC).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("hutch: template taken exists; use force to replace it (CONFLICT)"),
        "{}",
        out.stderr
    );
    let (out, mock) = build(&["taken", "--force"], SPEC).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mock.lock().unwrap().requests[0]["force"], true);

    let (out, _) = build(&["x"], "bogus = 1\n").await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("spec: unknown key `bogus` at line 1 (VALIDATION_ERROR)"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_prints_the_final_status() {
    let (out, _) = build(&["cowsay", "--json"], SPEC).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "active");
    assert_eq!(v["template_id"], "t-9");
    // The log went to stderr, keeping stdout for the JSON.
    assert!(out.stderr.contains("unpacking cowsay…"), "{}", out.stderr);
}
