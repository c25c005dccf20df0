//! Background jobs, process list and kill routes, observability and desktop stubs of the agent
//! (`spec` §7, §8.3–8.7, §11), against real sandboxes.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::Sandbox;

/// Polls a job until `done(job)` holds; panics with the last view after `limit`.
async fn wait_job(
    sb: &Sandbox<'_>,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + limit;
    loop {
        let (status, job) = sb.get(&format!("/execute/processes/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < until, "job {id} did not get there: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_finished(sb: &Sandbox<'_>, id: &str, limit: Duration) -> Value {
    wait_job(sb, id, limit, |j| j["status"] != "running").await
}

/// `args` of every process in the sandbox.
async fn process_args(sb: &Sandbox<'_>) -> Vec<String> {
    let out = sb.sh("ps -eo args=").await;
    out.stdout.lines().map(|l| l.trim().to_string()).collect()
}

/// Waits until no process has exactly these `args` (zombies show as `[name] <defunct>`).
async fn wait_gone(sb: &Sandbox<'_>, args: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let all = process_args(sb).await;
        if !all.iter().any(|a| a == args) {
            return;
        }
        assert!(Instant::now() < until, "`{args}` still running: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_present(sb: &Sandbox<'_>, args: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let all = process_args(sb).await;
        if all.iter().any(|a| a == args) {
            return;
        }
        assert!(Instant::now() < until, "`{args}` never started: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_code(sb: &Sandbox<'_>, body: Value) -> Value {
    let (status, v) = sb.post("/execute/background", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "running");
    assert!(
        v["process_id"].as_str().unwrap().starts_with("proc_"),
        "{v}"
    );
    assert!(
        v["execution_id"].as_str().unwrap().starts_with("exec_"),
        "{v}"
    );
    assert!(v["pid"].as_u64().unwrap() > 1, "{v}");
    assert!(v["start_time"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["message"].is_string());
    v
}

fn pid_of(v: &Value) -> String {
    v["process_id"].as_str().unwrap().to_string()
}

fn assert_error(v: &Value, code: &str) {
    assert!(v["error"].is_string(), "error must be a string: {v}");
    assert_eq!(v["code"], code, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_jobs_run_to_completion() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let started = start_code(
        &sb,
        json!({
            "code": "import os, time\nprint('start', os.environ['JOB_VAR'])\ntime.sleep(1.5)\nprint('done')",
            "language": "python",
            "timeout": 60,
            "env": {"JOB_VAR": "v1"},
            "name": "py-job",
        }),
    )
    .await;
    let id = pid_of(&started);
    assert_eq!(started["name"], "py-job");

    // Listed as running, with exit_code null.
    let (status, list) = sb.get("/execute/processes").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["timestamp"].is_string());
    let procs = list["processes"].as_array().unwrap();
    assert_eq!(list["count"].as_u64().unwrap() as usize, procs.len());
    let job = procs
        .iter()
        .find(|p| p["process_id"] == id.as_str())
        .expect("listed");
    assert_eq!(job["status"], "running", "{job}");
    assert!(job["exit_code"].is_null());
    assert_eq!(job["language"], "python");
    assert_eq!(job["name"], "py-job");
    assert_eq!(job["execution_id"], started["execution_id"]);

    let job = wait_finished(&sb, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["stdout"], "start v1\ndone\n");
    assert!(job["end_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(job["end_time"], job["completed_at"]);
    assert_eq!(job["start_time"], job["started_at"]);
    assert!(job["duration"].as_f64().unwrap() >= 1.4, "{job}");

    // A failing job: status failed, its exit code and stderr kept.
    let failing = start_code(
        &sb,
        json!({"code": "echo oops >&2; exit 3", "language": "bash"}),
    )
    .await;
    let job = wait_finished(&sb, &pid_of(&failing), Duration::from_secs(30)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["stderr"], "oops\n");
    // Without a name, the process id names the job.
    assert_eq!(job["name"], job["process_id"]);

    // JavaScript in a new node process.
    let js = start_code(
        &sb,
        json!({"code": "console.log(6 * 7)", "language": "javascript"}),
    )
    .await;
    let job = wait_finished(&sb, &pid_of(&js), Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["stdout"], "42\n");

    // Go: built and run from a private scratch directory, or a clear 400 without a toolchain.
    let go = json!({
        "code": "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"go\", 1+1) }",
        "language": "go",
        "timeout": 300,
    });
    let (status, v) = sb.post("/execute/background", go).await;
    let have_go = sb.sh("command -v go").await.exit_code == 0;
    if have_go {
        assert_eq!(status, StatusCode::OK, "{v}");
        let job = wait_finished(&sb, &pid_of(&v), Duration::from_secs(280)).await;
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(job["stdout"], "go 2\n");
        let left = sb.sh("ls -d /tmp/hutch-go-* 2>/dev/null | wc -l").await;
        assert_eq!(left.stdout.trim(), "0", "go scratch directory left behind");
    } else {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("`go`"), "{v}");
    }

    // Bad requests.
    let (status, v) = sb
        .post(
            "/execute/background",
            json!({"code": "x", "language": "cobol"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "INVALID_REQUEST");
    let (status, v) = sb
        .post("/execute/background", json!({"language": "python"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "INVALID_REQUEST");

    sb.kill_and_check();
}

#[tokio::test(flavor = "multi_thread")]
async fn background_commands_use_argv() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let run = |body: Value| {
        let sb = &sb;
        async move {
            let (status, v) = sb.post("/commands/background", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(v["status"], "running");
            let job = wait_finished(sb, &pid_of(&v), Duration::from_secs(30)).await;
            (v, job)
        }
    };

    // argv = command + args, exactly as the SDK sends `bash -c <cmd>`; arguments keep spaces.
    let (_, job) = run(json!({
        "command": "bash",
        "args": ["-c", "printf '%s|' \"$@\"", "zero", "a b", "c"],
        "timeout": 30,
        "workdir": "/workspace",
    }))
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["stdout"], "a b|c|");
    assert_eq!(job["language"], "command");

    // Without args the command is a shell line.
    let (_, job) = run(json!({"command": "echo one && echo two", "timeout": 30})).await;
    assert_eq!(job["stdout"], "one\ntwo\n", "{job}");

    // workdir, env and name.
    let (started, job) = run(json!({
        "command": "sh",
        "args": ["-c", "pwd; echo $FOO"],
        "working_dir": "/tmp",
        "env": {"FOO": "bar"},
        "name": "cmd-job",
        "timeout": 30,
    }))
    .await;
    assert_eq!(started["name"], "cmd-job");
    assert_eq!(job["stdout"], "/tmp\nbar\n", "{job}");

    // A program that does not exist.
    let (status, v) = sb
        .post(
            "/commands/background",
            json!({"command": "/nonexistent/prog", "args": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "COMMAND_FAILED");

    // Background commands are listed with the code jobs.
    let (_, list) = sb.get("/execute/processes").await;
    assert!(list["count"].as_u64().unwrap() >= 3, "{list}");

    sb.kill_and_check();
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_and_timeouts_end_the_whole_group() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    // POST /execute/kill/{id}: a job with a child of its own; both must go.
    let a = start_code(
        &sb,
        json!({"code": "sleep 3001 & sleep 3002; wait", "language": "bash"}),
    )
    .await;
    wait_present(&sb, "sleep 3001").await;
    wait_present(&sb, "sleep 3002").await;
    let (status, v) = sb
        .post(&format!("/execute/kill/{}", pid_of(&a)), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["process_id"], a["process_id"]);
    assert_eq!(v["status"], "killed", "{v}");
    let job = wait_finished(&sb, &pid_of(&a), Duration::from_secs(5)).await;
    assert_eq!(job["status"], "killed");
    assert_eq!(job["exit_code"], 137);
    wait_gone(&sb, "sleep 3001").await;
    wait_gone(&sb, "sleep 3002").await;

    // DELETE /execute/kill?process_id= (the agent spec's route).
    let b = start_code(&sb, json!({"code": "sleep 3003", "language": "bash"})).await;
    wait_present(&sb, "sleep 3003").await;
    let (status, v) = sb
        .request(
            Method::DELETE,
            &format!("/execute/kill?process_id={}", pid_of(&b)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "killed", "{v}");
    wait_gone(&sb, "sleep 3003").await;

    // Killing it again is harmless.
    let (status, v) = sb
        .post(&format!("/execute/kill/{}", pid_of(&b)), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["already_finished"], true);

    // POST /processes/{id}/kill (async SDK), by process id and by numeric pid.
    let c = start_code(
        &sb,
        json!({"code": "import time; time.sleep(3004)", "language": "python"}),
    )
    .await;
    let (status, v) = sb
        .post(&format!("/processes/{}/kill", pid_of(&c)), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "killed", "{v}");
    let d = start_code(&sb, json!({"code": "sleep 3005", "language": "bash"})).await;
    wait_present(&sb, "sleep 3005").await;
    let (status, v) = sb
        .post(&format!("/processes/{}/kill", d["pid"]), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["process_id"], d["process_id"], "{v}");
    assert_eq!(v["status"], "killed");
    wait_gone(&sb, "sleep 3005").await;

    // A process that is not a job, by pid.
    sb.post(
        "/commands/run",
        json!({"command": "bash", "args": ["-c", "setsid sleep 3006 >/dev/null 2>&1 < /dev/null &"]}),
    )
    .await;
    wait_present(&sb, "sleep 3006").await;
    let pid = sb
        .sh("pgrep -xf 'sleep 3006'")
        .await
        .stdout
        .trim()
        .to_string();
    let (status, v) = sb
        .post(&format!("/processes/{pid}/kill"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_gone(&sb, "sleep 3006").await;
    // The agent and init are off limits.
    let (status, v) = sb.post("/processes/1/kill", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    // The deadline kills the group too.
    let t = start_code(
        &sb,
        json!({"code": "sleep 3007 & sleep 3008; wait", "language": "bash", "timeout": 1}),
    )
    .await;
    let job = wait_finished(&sb, &pid_of(&t), Duration::from_secs(15)).await;
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["exit_code"], 137);
    wait_gone(&sb, "sleep 3007").await;
    wait_gone(&sb, "sleep 3008").await;

    // Unknown ids.
    for (method, path) in [
        (Method::POST, "/execute/kill/proc_nope"),
        (Method::DELETE, "/execute/kill/proc_nope"),
        (Method::DELETE, "/execute/kill?process_id=proc_nope"),
        (Method::POST, "/processes/proc_nope/kill"),
        (Method::POST, "/processes/999999/kill"),
        (Method::GET, "/execute/processes/proc_nope"),
    ] {
        let (status, v) = sb.request(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert_error(&v, "PROCESS_NOT_FOUND");
        assert_eq!(v["message"], v["error"]);
    }
    let (status, v) = sb.request(Method::DELETE, "/execute/kill", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "MISSING_PARAMETER");

    sb.kill_and_check();
}

#[tokio::test(flavor = "multi_thread")]
async fn process_list_shows_agent_and_jobs() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let job = start_code(
        &sb,
        json!({"code": "sleep 3101", "language": "bash", "name": "sleeper"}),
    )
    .await;
    let done = start_code(&sb, json!({"code": "true", "language": "bash"})).await;
    wait_finished(&sb, &pid_of(&done), Duration::from_secs(10)).await;

    let (status, v) = sb.get("/processes").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(v["count"].as_u64().unwrap() as usize, procs.len());
    for p in procs {
        assert!(p["pid"].is_u64(), "{p}");
        assert!(p["name"].is_string(), "{p}");
        assert!(p["status"].is_string(), "{p}");
        assert!(p["cpu_percent"].is_number(), "{p}");
        assert!(p["memory_mb"].is_number(), "{p}");
        assert!(p["command"].is_string(), "{p}");
    }
    let agent = procs
        .iter()
        .find(|p| p["role"] == "agent")
        .expect("agent listed");
    assert!(agent["memory_mb"].as_f64().unwrap() > 0.0, "{agent}");
    assert!(procs.iter().any(|p| p["pid"] == 1 && p["role"] == "init"));
    let running = procs
        .iter()
        .find(|p| p["process_id"] == job["process_id"])
        .expect("running job merged");
    assert_eq!(running["pid"], job["pid"]);
    assert_eq!(running["name"], "sleeper");
    assert_eq!(running["status"], "running");
    assert_eq!(running["process_name"], "sleep");
    let finished = procs
        .iter()
        .find(|p| p["process_id"] == done["process_id"])
        .expect("finished job listed");
    assert_eq!(finished["status"], "completed");

    sb.kill_and_check();
}

/// A raw HTTP/1.1 exchange, to see response headers.
async fn raw_get(sb: &Sandbox<'_>, path: &str) -> (String, String) {
    let mut s = tokio::net::UnixStream::connect(sb.agent.socket())
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn observability_and_desktop() {
    let env = common::TestEnv::new();
    let sb = env
        .sandbox_with(|spec| {
            spec.boot = json!({
                "sandbox_id": spec.id.as_str(),
                "template": "code-interpreter",
                "resources": {"vcpu": 1, "memory_mb": 512, "disk_mb": 2048, "pids": 512},
            });
        })
        .await;

    let (status, info) = sb.get("/info").await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["vm_id"], sb.id.as_str());
    for key in ["agent", "agent_version", "os", "arch", "start_time"] {
        assert!(info[key].is_string(), "{key}: {info}");
    }
    assert!(info["uptime"].is_u64(), "{info}");
    assert!(info["endpoints"].is_object());
    assert!(info["features"].is_object());
    assert!(info.get("vm_ip").is_some() && info.get("vm_port").is_some());

    // Traffic to count, including a templated path.
    sb.post("/execute/kill/proc_counted", json!(null)).await;
    sb.get("/no/such/route").await;

    for path in ["/metrics/snapshot", "/metrics"] {
        let (status, m) = sb.get(path).await;
        assert_eq!(status, StatusCode::OK, "{m}");
        for key in [
            "uptime_seconds",
            "total_requests",
            "total_errors",
            "error_count",
            "total_executions",
            "active_executions",
            "p95_duration_ms",
        ] {
            assert!(m[key].is_number(), "{key}: {m}");
        }
        assert!(m["timestamp"].as_str().unwrap().ends_with('Z'));
        let req = &m["requests_total"];
        assert!(req["/health"].as_u64().unwrap() >= 1, "{m}");
        assert_eq!(req["/execute/kill/{process_id}"], 1, "{m}");
        assert!(req.get("/execute/kill/proc_counted").is_none(), "{m}");
        assert!(req.get("/no/such/route").is_none(), "{m}");
        assert!(m["avg_duration_ms"]["/health"].is_number());
        assert!(m["total_errors"].as_u64().unwrap() >= 2);
        assert_eq!(m["system"]["cpu"]["cores"], 1);
        let cpu = m["system"]["cpu"]["usage_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu));
        let mem = &m["system"]["memory"];
        assert_eq!(mem["total"].as_u64().unwrap(), 512 * 1024 * 1024, "{m}");
        assert!(mem["used"].as_u64().unwrap() > 0);
        assert!(mem["usage_percent"].is_number());
        assert!(m["system"]["disk"]["total"].as_u64().unwrap() > 0);
        assert!(m["process"]["count"].as_u64().unwrap() >= 2);
        assert!(m["process"]["running"].is_u64());
        for key in ["size", "hits", "misses", "hit_rate"] {
            assert!(m["cache"][key].is_number(), "{key}");
        }
    }

    let (head, body) = raw_get(&sb, "/metrics/prometheus").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains("# TYPE hutch_agent_http_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains("hutch_agent_http_requests_total{path=\"/health\"}"),
        "{body}"
    );
    assert!(
        body.contains("hutch_agent_memory_bytes{kind=\"total\"} 536870912"),
        "{body}"
    );
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line}");
    }
    let (head, _) = raw_get(&sb, "/info").await;
    assert!(head.contains("content-type: application/json"), "{head}");

    let (status, s) = sb.get("/system").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        s["cpu"]["cores"].is_u64() && s["memory"]["total"].is_u64(),
        "{s}"
    );
    let (status, p) = sb.get("/ping").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["status"], "ok");
    let (status, j) = sb.get("/jupyter/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(j["sessions"], json!([]));

    // Desktop: every path, every method, 501 DESKTOP_NOT_AVAILABLE in both clients' shapes.
    for (method, path) in [
        (Method::GET, "/desktop/vnc/status"),
        (Method::POST, "/desktop/mouse/click"),
        (Method::GET, "/desktop/screenshot"),
        (Method::GET, "/desktop"),
    ] {
        let body = (method == Method::POST).then(|| json!({"x": 1, "y": 1}));
        let (status, v) = sb.request(method, path, body).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{path}: {v}");
        assert_eq!(v["error"], "Desktop not available");
        assert_eq!(v["code"], "DESKTOP_NOT_AVAILABLE");
        let deps = json!(["xvfb", "x11vnc", "xdotool"]);
        assert_eq!(v["details"]["missing_dependencies"], deps);
        assert_eq!(v["missing_dependencies"], deps);
    }

    sb.kill_and_check();
}
