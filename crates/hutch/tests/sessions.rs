//! Persistent execution contexts through the control plane (`docs/sessions-api.md`), on a real
//! server with real sandboxes: state survives a stop/start, a server restart and the death of
//! the session's sandbox; history and statistics come from SQLite; artifacts are listed,
//! fetched and removed; deleting a session kills the sandbox it created.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use common::server::TestServer;

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.client.json(method, path, body.as_ref()).await.unwrap()
}

async fn exec(s: &TestServer, sid: &str, code: &str) -> Value {
    let (status, v) = call(
        s,
        Method::POST,
        &format!("/v1/sessions/{sid}/execute"),
        Some(json!({"code": code, "timeout": 60})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn sorted(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn session_state_outlives_restarts_and_its_sandbox() {
    let mut s = TestServer::start().await;

    // Create; the same id again is the same session (200); bad ids are 400.
    let (status, created) = call(
        &s,
        Method::POST,
        "/v1/sessions",
        Some(json!({"session_id": "analysis"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["session_id"], "analysis");
    assert!(created["sandbox_id"].is_null());
    assert_eq!(created["artifacts_dir"], "/workspace/artifacts");
    let (status, again) = call(
        &s,
        Method::POST,
        "/v1/sessions",
        Some(json!({"session_id": "analysis"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    for bad in [
        json!({"session_id": "../x"}),
        json!({"session_id": ""}),
        json!({"bogus": 1}),
    ] {
        let (status, v) = call(&s, Method::POST, "/v1/sessions", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (status, _) = call(&s, Method::GET, "/v1/sessions/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &s,
        Method::POST,
        "/v1/sessions/bad%20id/execute",
        Some(json!({"code": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // First execution: creates the sandbox; a figure and a data file become artifacts.
    let first = exec(
        &s,
        "analysis",
        "import json\nimport matplotlib.pyplot as plt\n\
         def double(v):\n    return 2 * v\n\
         class Point:\n    def __init__(self, x):\n        self.x = x\n\
         values = [1, 2, 3]\np = Point(5)\n\
         plt.plot(values); plt.show()\n\
         open('/workspace/result.json', 'w').write(json.dumps(values))\nprint('ok')",
    )
    .await;
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["stdout"], "ok\n");
    assert!(first["restored"].is_null());
    assert_eq!(
        sorted(&first["persisted"]["saved"]),
        ["Point", "double", "json", "p", "plt", "values"]
    );
    let sandbox = first["sandbox_id"].as_str().unwrap().to_string();
    let mut cats: Vec<&str> = first["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["category"].as_str().unwrap())
        .collect();
    cats.sort_unstable();
    assert_eq!(cats, ["data", "plots"], "{first}");

    // Errors and timeouts are 200 with success false and a typed error.
    let failed = exec(&s, "analysis", "values.append(4)\n1 / 0").await;
    assert_eq!(failed["success"], false);
    assert_eq!(failed["error_type"], "ZeroDivisionError");
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .starts_with("ZeroDivisionError:"));
    assert!(
        failed["traceback"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{failed}"
    );
    let (status, slow) = call(
        &s,
        Method::POST,
        "/v1/sessions/analysis/execute",
        Some(json!({"code": "import time\ntime.sleep(30)", "timeout": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{slow}");
    assert_eq!(slow["success"], false);
    assert_eq!(slow["error_type"], "TimeoutError");
    assert_eq!(slow["timeout"], 1);
    assert_eq!(slow["timed_out"], true);

    // Stop and start the sandbox: the kernel is new, the state comes back.
    let (status, _) = call(
        &s,
        Method::POST,
        &format!("/v1/sandboxes/{sandbox}/stop"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &s,
        Method::POST,
        &format!("/v1/sandboxes/{sandbox}/start"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let after_start = exec(&s, "analysis", "print(double(p.x), values)").await;
    assert_eq!(after_start["success"], true, "{after_start}");
    // `values.append(4)` ran in a cell that failed, so it was never saved.
    assert_eq!(after_start["stdout"], "10 [1, 2, 3]\n", "{after_start}");
    assert!(
        after_start["restored"]["restored"]
            .as_array()
            .unwrap()
            .len()
            >= 6
    );

    // A server restart loses nothing.
    s.stop();
    s.launch().await;
    let after_restart = exec(&s, "analysis", "counter = 1\nprint(type(p).__name__)").await;
    assert_eq!(after_restart["stdout"], "Point\n", "{after_restart}");
    assert_eq!(after_restart["sandbox_id"], sandbox.as_str());

    // Kill the session's sandbox: the next execution runs in a new one with the state restored
    // from the server's copy.
    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/sandboxes/{sandbox}"),
        None,
    )
    .await;
    assert!(status.is_success());
    let moved = exec(
        &s,
        "analysis",
        "counter += 1\nprint(counter, double(21), json.dumps({'a': 1}))",
    )
    .await;
    assert_eq!(moved["success"], true, "{moved}");
    assert_eq!(moved["stdout"], "2 42 {\"a\": 1}\n");
    assert_ne!(moved["sandbox_id"], sandbox.as_str());
    assert!(sorted(&moved["restored"]["restored"]).contains(&"counter".to_string()));
    let new_sandbox = moved["sandbox_id"].as_str().unwrap().to_string();

    // History (newest first, from SQLite) and statistics.
    let (status, hist) = call(
        &s,
        Method::GET,
        "/v1/sessions/analysis/history?limit=3",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let entries = hist["data"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["execution_id"], moved["execution_id"]);
    assert_eq!(entries[0]["code_digest"].as_str().unwrap().len(), 64);
    let (_, all) = call(&s, Method::GET, "/v1/sessions/analysis/history", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 6);
    let last = all["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["artifacts"], 2);
    let (_, stats) = call(&s, Method::GET, "/v1/sessions/analysis/stats", None).await;
    assert_eq!(stats["total_executions"], 6, "{stats}");
    assert_eq!(stats["cache_hits"], 0);
    assert_eq!(stats["artifacts_count"], 2);
    let (_, sess) = call(&s, Method::GET, "/v1/sessions/analysis", None).await;
    assert_eq!(sess["execution_count"], 6);
    assert_eq!(sess["sandbox_id"], new_sandbox.as_str());
    assert!(sorted(&sess["variables"]).contains(&"counter".to_string()));

    // Cache: a key serves the result again; another key or other code does not.
    let code = "import random\nrandom.random()";
    let cached = |key: &'static str, code: &'static str| {
        let s = &s;
        async move {
            call(
                s,
                Method::POST,
                "/v1/sessions/analysis/execute",
                Some(json!({"code": code, "cache_key": key})),
            )
            .await
            .1
        }
    };
    let a = cached("k1", code).await;
    let b = cached("k1", code).await;
    assert_eq!(b["cache_hit"], true, "{b}");
    assert_eq!(a["result"], b["result"]);
    let c = cached("k1", "1 + 1").await;
    assert_eq!(c["cache_hit"], false);
    assert_eq!(c["result"], "2");
    let (_, stats) = call(&s, Method::GET, "/v1/sessions/analysis/stats", None).await;
    assert_eq!(stats["cache_hits"], 1, "{stats}");
    let (status, _) = call(&s, Method::POST, "/v1/sessions/analysis/cache/clear", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, saved) = call(&s, Method::POST, "/v1/sessions/analysis/save", None).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert!(sorted(&saved["saved"]).contains(&"counter".to_string()));

    // Artifacts made in the killed sandbox are listed but gone; make one in the new sandbox
    // and fetch it.
    let fig = exec(
        &s,
        "analysis",
        "plt.figure(); plt.plot([3, 1]); plt.savefig('/workspace/fig.png')",
    )
    .await;
    let png = fig["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "fig.png")
        .cloned()
        .unwrap_or_else(|| panic!("no fig.png in {fig}"));
    assert_eq!(png["category"], "images");
    let r = s
        .client
        .send(
            Method::GET,
            &format!(
                "/v1/sessions/analysis/artifacts/{}",
                png["id"].as_str().unwrap()
            ),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..4], b"\x89PNG");
    let old = first["artifacts"][0]["id"].as_str().unwrap();
    let (status, _) = call(
        &s,
        Method::GET,
        &format!("/v1/sessions/analysis/artifacts/{old}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = call(
        &s,
        Method::GET,
        &format!(
            "/v1/sessions/analysis/artifacts?execution_id={}",
            fig["execution_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert!(!listed["data"].as_array().unwrap().is_empty(), "{listed}");
    let (_, removed) = call(&s, Method::DELETE, "/v1/sessions/analysis/artifacts", None).await;
    assert!(removed["removed"].as_u64().unwrap() >= 3, "{removed}");
    let (_, listed) = call(&s, Method::GET, "/v1/sessions/analysis/artifacts", None).await;
    assert_eq!(listed["data"], json!([]));

    // Deleting the session kills the sandbox it created.
    let (_, list) = call(&s, Method::GET, "/v1/sessions", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (status, deleted) = call(&s, Method::DELETE, "/v1/sessions/analysis", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"session_id": "analysis", "status": "deleted"})
    );
    let (status, _) = call(
        &s,
        Method::GET,
        &format!("/v1/sandboxes/{new_sandbox}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&s, Method::GET, "/v1/sessions/analysis/history", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_session_in_a_given_sandbox_leaves_it_running() {
    let s = TestServer::start().await;
    let (id, _token, _) = s.create(json!({"template_name": "code-interpreter"})).await;
    let (status, v) = call(
        &s,
        Method::POST,
        "/v1/sessions",
        Some(json!({"session_id": "mine", "sandbox_id": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(exec(&s, "mine", "x = 3\nx * 2").await["result"], "6");
    // A second session in the same sandbox has its own namespace.
    call(
        &s,
        Method::POST,
        "/v1/sessions",
        Some(json!({"session_id": "other", "sandbox_id": id})),
    )
    .await;
    assert_eq!(
        exec(&s, "other", "'x' in globals()").await["result"],
        "False"
    );
    let (status, _) = call(&s, Method::DELETE, "/v1/sessions/mine", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, sb) = call(&s, Method::GET, &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sb["status"], "running");
    let (status, v) = call(
        &s,
        Method::POST,
        "/v1/sessions",
        Some(json!({"sandbox_id": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}
