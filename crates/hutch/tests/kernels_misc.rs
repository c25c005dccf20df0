//! Bash and Go execution, the result cache (opt-in only), history and statistics, the
//! `/execute/stream` WebSocket and `/execute/async` callbacks, in real sandboxes.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::Sandbox;

/// Lines in the file the cached cell appends to: how often it really ran.
async fn runs(sb: &Sandbox<'_>) -> String {
    sb.sh("wc -l < /tmp/runs.txt")
        .await
        .stdout
        .trim()
        .to_string()
}

async fn exec(sb: &Sandbox<'_>, body: Value) -> Value {
    let (status, v) = sb.post("/execute", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn bash_runs_per_call_with_env_and_workdir() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let body = exec(
        &sb,
        json!({"code": "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3", "language": "bash",
               "env": {"GREETING": "hi"}, "workdir": "/tmp/bash-dir"}),
    )
    .await;
    assert_eq!(body["stdout"], "hi from /tmp/bash-dir\n");
    assert_eq!(body["stderr"], "oops\n");
    assert_eq!(body["exit_code"], 3);
    assert_eq!(body["success"], false);
    assert_eq!(body["language"], "bash");
    assert!(body["context_id"].is_null());

    // Nothing persists between bash calls (it runs per call) …
    exec(
        &sb,
        json!({"code": "export ONLY_HERE=1", "language": "shell"}),
    )
    .await;
    let body = exec(
        &sb,
        json!({"code": "echo \"[${ONLY_HERE:-unset}]\"", "language": "sh"}),
    )
    .await;
    assert_eq!(body["stdout"], "[unset]\n");
    // … except the files it writes, and the sandbox's /env variables apply.
    let (status, _) = sb
        .request(
            hyper::Method::PUT,
            "/env",
            Some(json!({"env_vars": {"FROM_ENV_API": "yes"}})),
        )
        .await;
    assert!(status.is_success());
    let body = exec(
        &sb,
        json!({"code": "echo $FROM_ENV_API", "language": "bash"}),
    )
    .await;
    assert_eq!(body["stdout"], "yes\n");
    let py = exec(
        &sb,
        json!({"code": "import os; os.environ['FROM_ENV_API']", "language": "python"}),
    )
    .await;
    assert_eq!(py["result"], "'yes'");

    let start = Instant::now();
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "echo start; sleep 30", "language": "bash", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "EXECUTION_TIMEOUT");
    assert_eq!(body["stdout"], "start\n");
    assert!(start.elapsed() < Duration::from_secs(3));

    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "echo", "language": "bash", "context_id": "default-python"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    sb.kill_and_check();
}

#[tokio::test]
async fn go_compiles_once_and_runs() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let program = "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(\"hello from go\", os.Getenv(\"WHO\"))\n\tfmt.Fprintln(os.Stderr, \"err line\")\n}\n";
    let first = exec(
        &sb,
        json!({"code": program, "language": "go", "env": {"WHO": "tester"}}),
    )
    .await;
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["stdout"], "hello from go tester\n");
    assert_eq!(first["stderr"], "err line\n");
    let second = exec(&sb, json!({"code": program, "language": "go"})).await;
    assert_eq!(second["stdout"], "hello from go \n");
    let (_, stats) = sb.get("/execute/stats").await;
    assert_eq!(stats["compile_cache_hits"], 1, "{stats}");
    assert!(
        stats["cached_compilations"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // A compile error is a failed run with the compiler's message, line numbers intact.
    let broken = exec(
        &sb,
        json!({"code": "package main\n\nfunc main() {\n\tundefinedThing()\n}\n", "language": "go"}),
    )
    .await;
    assert_eq!(broken["success"], false);
    assert_ne!(broken["exit_code"], 0);
    assert!(
        broken["stderr"].as_str().unwrap().contains("main.go:4:"),
        "{broken}"
    );

    // A missing toolchain is a clear 400 naming it.
    let (status, missing) = sb
        .post(
            "/execute",
            json!({"code": program, "language": "go", "env": {"PATH": "/nonexistent"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{missing}");
    assert_eq!(missing["code"], "INVALID_REQUEST");
    assert!(
        missing["error"].as_str().unwrap().contains("`go`"),
        "{missing}"
    );
    sb.kill_and_check();
}

#[tokio::test]
async fn the_result_cache_is_opt_in() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let cell =
        "with open('/tmp/runs.txt', 'a') as f:\n    f.write('run\\n')\nprint('side effect')\n7 * 6";

    // Without opting in, identical code runs every time.
    for _ in 0..2 {
        let body = exec(&sb, json!({"code": cell, "language": "python"})).await;
        assert_eq!(body["cache_hit"], false);
    }
    assert_eq!(runs(&sb).await, "2");

    // Opted in: the second identical call is served from the cache and does not run.
    let a = exec(
        &sb,
        json!({"code": cell, "language": "python", "cache": true}),
    )
    .await;
    let b = exec(
        &sb,
        json!({"code": cell, "language": "python", "cache": true}),
    )
    .await;
    assert_eq!(a["cache_hit"], false);
    assert_eq!(b["cache_hit"], true, "{b}");
    assert_eq!(b["stdout"], "side effect\n");
    assert_eq!(b["result"], "42");
    assert_ne!(a["execution_id"], b["execution_id"]);
    assert_eq!(runs(&sb).await, "3");
    // A different cache_key, env or workdir is a different entry.
    let c = exec(
        &sb,
        json!({"code": cell, "language": "python", "cache_key": "v2"}),
    )
    .await;
    assert_eq!(c["cache_hit"], false);
    let d = exec(
        &sb,
        json!({"code": cell, "language": "python", "cache": true, "env": {"X": "1"}}),
    )
    .await;
    assert_eq!(d["cache_hit"], false);
    assert_eq!(runs(&sb).await, "5");
    // A plain call after all that still runs.
    exec(&sb, json!({"code": cell, "language": "python"})).await;
    assert_eq!(runs(&sb).await, "6");
    // Failures are not cached.
    for _ in 0..2 {
        let f = exec(
            &sb,
            json!({"code": "1/0", "language": "python", "cache": true}),
        )
        .await;
        assert_eq!(f["cache_hit"], false);
    }

    let (status, stats) = sb.get("/cache/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["cache"]["size"], 3, "{stats}");
    assert_eq!(stats["cache"]["max_size"], 1000);
    assert_eq!(stats["cache"]["total_hits"], 1);
    assert_eq!(stats["cache"]["ttl"], "1h0m0s");
    assert_eq!(stats["hits"], 1);
    assert_eq!(stats["misses"], 5, "{stats}");
    assert_eq!(stats["size"], 3);
    assert_eq!(stats["count"], 3);
    assert!((stats["hit_rate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
    assert!(stats["compiled_entries"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["timestamp"].is_string());
    // The metrics snapshot reports the same counters, not placeholders.
    for path in ["/metrics", "/metrics/snapshot"] {
        let (status, m) = sb.get(path).await;
        assert_eq!(status, StatusCode::OK, "{m}");
        let cache = &m["cache"];
        assert_eq!(cache["size"], 3, "{path}: {m}");
        assert_eq!(cache["max_size"], 1000, "{path}: {m}");
        assert_eq!(cache["hits"], 1, "{path}: {m}");
        assert_eq!(cache["misses"], 5, "{path}: {m}");
        let rate = cache["hit_rate"].as_f64().unwrap();
        assert!((rate - 1.0 / 6.0).abs() < 1e-9, "{path}: {m}");
    }

    let (status, cleared) = sb.post("/cache/clear", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["message"], "Cache cleared successfully");
    assert_eq!(cleared["entries_removed"], 3);
    let (_, stats) = sb.get("/cache/stats").await;
    assert_eq!(stats["cache"]["size"], 0);
    assert_eq!(stats["cache"]["total_hits"], 0);
    assert_eq!(stats["compiled_entries"], 0);
    let (_, m) = sb.get("/metrics").await;
    assert_eq!(m["cache"]["size"], 0, "{m}");
    assert_eq!(m["cache"]["hits"], 0, "{m}");
    assert_eq!(m["cache"]["misses"], 0, "{m}");
    // After a clear the same opted-in call runs again.
    let e = exec(
        &sb,
        json!({"code": cell, "language": "python", "cache": true}),
    )
    .await;
    assert_eq!(e["cache_hit"], false);
    assert_eq!(runs(&sb).await, "7");
    sb.kill_and_check();
}

#[tokio::test]
async fn history_and_stats_count_executions() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    exec(&sb, json!({"code": "1 + 1", "language": "python"})).await;
    exec(&sb, json!({"code": "1 + 1", "language": "python"})).await;
    exec(
        &sb,
        json!({"code": "raise ValueError('x')", "language": "python"}),
    )
    .await;
    exec(
        &sb,
        json!({"code": "import matplotlib.pyplot as plt\nplt.plot([1])", "language": "python"}),
    )
    .await;
    exec(&sb, json!({"code": "echo hi", "language": "bash"})).await;
    exec(
        &sb,
        json!({"code": "1 + 1", "language": "python", "cache": true}),
    )
    .await;
    exec(
        &sb,
        json!({"code": "1 + 1", "language": "python", "cache": true}),
    )
    .await;

    let (status, stats) = sb.get("/execute/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["total_executions"], 7, "{stats}");
    assert_eq!(stats["successful_executions"], 6);
    assert_eq!(stats["failed_executions"], 1);
    assert_eq!(stats["cache_hits"], 1);
    assert_eq!(stats["cache_misses"], 6);
    assert!((stats["cache_hit_ratio"].as_f64().unwrap() - 1.0 / 7.0).abs() < 1e-9);
    // 1+1 was compiled once and reused by the later cells.
    assert!(
        stats["compile_cache_hits"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(
        stats["cached_compilations"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    // The figure; the plain-text results (`2`, the Line2D list) are not artifacts.
    assert_eq!(stats["artifacts_count"], 1, "{stats}");
    assert!(stats["average_execution_time"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["by_language"]["python"], 6);
    assert_eq!(stats["by_language"]["bash"], 1);

    let (status, history) = sb.get("/execute/history?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let entries = history["history"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(history["count"], 3);
    // Newest first: the cache hit, the opted-in run, bash.
    assert_eq!(entries[0]["cache_hit"], true);
    assert_eq!(entries[1]["cache_hit"], false);
    assert_eq!(entries[2]["language"], "bash");
    assert_eq!(entries[0]["code_sha256"], entries[1]["code_sha256"]);
    assert_eq!(entries[0]["code_sha256"].as_str().unwrap().len(), 64);
    assert!(entries[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    let (_, all) = sb.get("/execute/history").await;
    assert_eq!(all["history"].as_array().unwrap().len(), 7);
    let failed: Vec<&Value> = all["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["success"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    let (status, _) = sb.get("/execute/history?limit=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sb.kill_and_check();
}

async fn stream(sb: &Sandbox<'_>, request: Value) -> Vec<Value> {
    let mut ws = sb.ws("/execute/stream").await;
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send the execute message");
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("stream frames in time");
        let Some(Ok(msg)) = msg else { break };
        if let Message::Text(t) = msg {
            assert!(t.len() < 1 << 20);
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
            let done = v["type"] == "complete";
            frames.push(v);
            if done {
                break;
            }
        }
    }
    frames
}

#[tokio::test]
async fn streaming_frames() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    // The SDK's own request shape.
    let frames = stream(
        &sb,
        json!({"type": "execute", "code": "print(1)", "language": "python", "timeout": 60, "workdir": "/workspace"}),
    )
    .await;
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["stdout", "result", "complete"], "{frames:?}");
    assert_eq!(frames[0]["data"], "1\n");
    assert!(frames[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(frames[1]["exit_code"], 0);
    assert!(frames[1]["execution_time"].is_number());
    assert_eq!(frames[2]["success"], true);

    // Bash output streams in order too; failures end with an error frame.
    let frames = stream(
        &sb,
        json!({"type": "execute", "code": "echo a; sleep 0.2; echo b >&2; exit 4", "language": "bash"}),
    )
    .await;
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["stdout", "stderr", "result", "error", "complete"],
        "{frames:?}"
    );
    assert_eq!(frames[2]["exit_code"], 4);
    assert_eq!(frames[4]["success"], false);

    // Rich output arrives as display frames; a timeout is an error frame.
    let frames = stream(
        &sb,
        json!({"type": "execute", "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nwhile True: pass", "language": "python", "timeout": 1}),
    )
    .await;
    let display = frames
        .iter()
        .find(|f| f["type"] == "display")
        .expect("display frame");
    assert!(display["data"]["image/png"]
        .as_str()
        .unwrap()
        .starts_with("iVBORw0KGgo"));
    let error = frames
        .iter()
        .find(|f| f["type"] == "error")
        .expect("error frame");
    assert_eq!(error["code"], "EXECUTION_TIMEOUT");
    assert_eq!(frames.last().unwrap()["type"], "complete");

    // A bad request gets an error frame and complete.
    let frames = stream(&sb, json!({"type": "execute", "language": "python"})).await;
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], "INVALID_REQUEST");
    assert_eq!(frames[1]["type"], "complete");

    // Closing the socket interrupts the running code; the kernel stays usable.
    let mut ws = sb.ws("/execute/stream").await;
    ws.send(Message::Text(
        json!({"type": "execute", "code": "import time\nstarted = True\nwhile True: time.sleep(0.05)", "language": "python", "timeout": 600})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(ws);
    let start = Instant::now();
    let after = exec(&sb, json!({"code": "started", "language": "python"})).await;
    assert_eq!(after["result"], "True");
    assert!(start.elapsed() < Duration::from_secs(5));
    sb.kill_and_check();
}

/// A receiver inside the sandbox: records the callback's headers and body, and whether the
/// signature matches the body.
const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        want = 'sha256=' + hmac.new(b'topsecret', body, hashlib.sha256).hexdigest()
        rec = {'headers': {k.lower(): v for k, v in self.headers.items()}, 'body': json.loads(body), 'path': self.path,
               'valid': hmac.compare_digest(want, self.headers.get('X-HOPX-Signature', ''))}
        with open('/tmp/callback.json.tmp', 'w') as f:
            json.dump(rec, f)
        import os; os.rename('/tmp/callback.json.tmp', '/tmp/callback.json')
        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

#[tokio::test]
async fn async_execution_posts_a_signed_callback() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let files = sb
        .post(
            "/files/write",
            json!({"path": "/tmp/receiver.py", "content": RECEIVER}),
        )
        .await;
    assert!(files.0.is_success(), "{:?}", files.1);
    sb.sh("nohup python3 /tmp/receiver.py 18765 >/tmp/receiver.log 2>&1 &")
        .await;
    // Wait for the receiver to listen.
    let until = Instant::now() + Duration::from_secs(10);
    while !sb
        .sh("python3 -c \"import socket; socket.create_connection(('127.0.0.1', 18765))\" && echo up")
        .await
        .stdout
        .contains("up")
    {
        assert!(Instant::now() < until, "receiver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, queued) = sb
        .post(
            "/execute/async",
            json!({"code": "print('async hi')\n6 * 7", "language": "python", "timeout": 60,
                   "workdir": "/workspace", "callback_url": "http://127.0.0.1:18765/hook?x=1",
                   "callback_headers": {"Authorization": "Bearer abc"},
                   "callback_signature_secret": "topsecret"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["callback_url"], "http://127.0.0.1:18765/hook?x=1");
    let id = queued["execution_id"].as_str().unwrap().to_string();

    let until = Instant::now() + Duration::from_secs(20);
    let record = loop {
        let out = sb.sh("cat /tmp/callback.json 2>/dev/null").await.stdout;
        if !out.is_empty() {
            break serde_json::from_str::<Value>(&out).unwrap();
        }
        assert!(Instant::now() < until, "no callback arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["valid"], true, "{record}");
    assert_eq!(record["path"], "/hook?x=1");
    assert_eq!(record["headers"]["authorization"], "Bearer abc");
    let ts: i64 = record["headers"]["x-hopx-timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    let body = &record["body"];
    assert_eq!(body["execution_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["stdout"], "async hi\n");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(body["result"], "42");
    assert!(body["execution_time"].is_number());
    // The execution is in the history under the same id.
    let (_, history) = sb.get("/execute/history?limit=1").await;
    assert_eq!(history["history"][0]["execution_id"], id.as_str());

    // Only http:// callbacks; a missing one is a 400.
    let (status, bad) = sb
        .post(
            "/execute/async",
            json!({"code": "1", "callback_url": "https://example.com/x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, _) = sb.post("/execute/async", json!({"code": "1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sb.kill_and_check();
}
