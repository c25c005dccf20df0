//! The HopX control plane over real HTTP: a `hutch serve` on loopback, real sandboxes.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::server::{TestServer, API_KEY};
use hutch_client::ControlClient;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{v}"
    );
}

fn dirs_where(s: &TestServer, warm: bool) -> usize {
    std::fs::read_dir(s.data_dir().join("sandboxes"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("warm-") == warm)
                .count()
        })
        .unwrap_or(0)
}

/// Directories of sandboxes users created (the warm pool's are not counted).
fn sandbox_dirs(s: &TestServer) -> usize {
    dirs_where(s, false)
}

/// Directories of warm sandboxes waiting in the pool.
fn warm_dirs(s: &TestServer) -> usize {
    dirs_where(s, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_auth() {
    let s = TestServer::start().await;
    let anon = ControlClient::new(&s.url, None).unwrap();
    let (status, v) = anon.json(Method::GET, "/health", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "healthy");

    let r = anon
        .send(Method::GET, "/v1/sandboxes", None, &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("x-request-id").is_some());
    assert_error(&r.json(), "UNAUTHORIZED");

    let wrong = ControlClient::new(&s.url, Some("nope".into())).unwrap();
    let (status, _) = wrong
        .json(Method::GET, "/v1/sandboxes", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bearer works as well as X-API-Key (the template builder uses Bearer).
    let r = anon
        .send(
            Method::GET,
            "/v1/sandboxes",
            None,
            &[("authorization", &format!("Bearer {API_KEY}"))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_creates_nothing() {
    let s = TestServer::start().await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "missing template",
            json!({}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "wrong type",
            json!({"template_name": "code-interpreter", "timeout_seconds": "soon"}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "template_id of a wrong type",
            json!({"template_id": {"a": 1}}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "unknown template",
            json!({"template_name": "nope"}),
            StatusCode::NOT_FOUND,
            "TEMPLATE_NOT_FOUND",
        ),
        (
            "absurd memory",
            json!({"template_name": "code-interpreter", "memory_mb": 1_000_000_000u64}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "absurd cpu",
            json!({"template_name": "code-interpreter", "vcpu": 4096}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "negative timeout",
            json!({"template_name": "code-interpreter", "timeout_seconds": -5}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "bad env name",
            json!({"template_name": "code-interpreter", "env_vars": {"A=B": "x"}}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            "env value of a wrong type",
            json!({"template_name": "code-interpreter", "env_vars": {"A": 1}}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, body, status, code) in cases {
        let (got, v) = s
            .client
            .json(Method::POST, "/v1/sandboxes", Some(&body))
            .await
            .unwrap();
        assert_eq!(got, status, "{name}: {v}");
        assert_error(&v, code);
        if name == "absurd memory" {
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("memory_mb"),
                "{v}"
            );
        }
    }
    // Malformed JSON and an oversized body.
    let r = s
        .client
        .send(Method::POST, "/v1/sandboxes", Some("{not json".into()), &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_error(&r.json(), "VALIDATION_ERROR");
    let big = format!(
        "{{\"template_name\":\"code-interpreter\",\"x\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let r = s
        .client
        .send(Method::POST, "/v1/sandboxes", Some(big.into()), &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.json());

    // Unknown ids, including ones that try to climb out of the sandboxes directory.
    for path in [
        "/v1/sandboxes/doesnotexist",
        "/v1/sandboxes/..%2F..%2Fetc",
        "/v1/sandboxes/A%20B",
    ] {
        let (status, v) = s.client.json(Method::GET, path, None).await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_error(&v, "RESOURCE_NOT_FOUND");
        let (status, _) = s.client.json(Method::DELETE, path, None).await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .client
            .json(Method::POST, &format!("{path}/pause"), None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, list) = s
        .client
        .json(Method::GET, "/v1/sandboxes", None)
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    assert_eq!(sandbox_dirs(&s), 0, "a failed create left files");
}

#[tokio::test(flavor = "multi_thread")]
async fn full_lifecycle_over_http() {
    let s = TestServer::start().await;
    let (id, token, created) = s
        .create(json!({"template_name": "code-interpreter", "env_vars": {"GREETING": "hi"}}))
        .await;
    assert_eq!(created["status"], "running");
    assert_eq!(created["public_host"], s.url.as_str());
    assert!(created["template_id"].is_string());
    for k in ["vcpu", "memory_mb", "disk_mb"] {
        assert!(created["resources"][k].is_u64(), "{created}");
    }
    let exp = created["token_expires_at"].as_str().unwrap();
    assert!(exp.ends_with('Z') && !exp.contains('.'), "{exp}");
    assert!(created["expires_at"].is_null());

    let (status, got) = s
        .client
        .json(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], id.as_str());
    assert!(
        got.get("auth_token").is_none(),
        "tokens only in create/refresh"
    );

    // The gateway routes by token; the agent sees the create-time env.
    let out = s.run(&token, "echo $GREETING").await;
    assert_eq!(out["stdout"], "hi\n");
    // The health probe with a token reaches the sandbox's agent.
    let (status, h) = s.agent(&token, Method::GET, "/health", None).await;
    assert_eq!(
        (status, h["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );

    // Pause: agent calls fail fast with a clear, non-retried error.
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/pause"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let t = Instant::now();
    let (status, v) = s
        .agent(
            &token,
            Method::POST,
            "/commands/run",
            Some(json!({"command": "true"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "SANDBOX_PAUSED");
    assert!(v["error"].is_string());
    assert!(t.elapsed() < Duration::from_secs(1));
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/pause"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&v, "INVALID_STATE");
    let (status, _) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/resume"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    // Stop keeps files; start brings them back.
    s.run(&token, "echo kept > /workspace/k").await;
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("stopped"))
    );
    let (status, v) = s.agent(&token, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/start"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    assert_eq!(s.run(&token, "cat /workspace/k").await["stdout"], "kept\n");

    // Timeout: expires_at moves to now + N.
    let (status, v) = s
        .client
        .json(
            Method::PUT,
            &format!("/v1/sandboxes/{id}/timeout"),
            Some(&json!({"timeout_seconds": 600})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["timeout_seconds"], 600);
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((595..=600).contains(&left), "{left}");
    let (status, _) = s
        .client
        .json(
            Method::PUT,
            &format!("/v1/sandboxes/{id}/timeout"),
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Token refresh: the new token works, and so does the old one until it expires.
    let (status, v) = s
        .client
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{id}/token/refresh"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let fresh = v["auth_token"].as_str().unwrap().to_string();
    assert!(v["token_expires_at"].is_string());
    assert_ne!(fresh, token);
    assert_eq!(s.run(&fresh, "echo new").await["stdout"], "new\n");
    assert_eq!(s.run(&token, "echo old").await["stdout"], "old\n");

    // Delete: JSON body, then gone everywhere.
    let (status, v) = s
        .client
        .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("deleted"))
    );
    let (status, v) = s
        .client
        .json(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "RESOURCE_NOT_FOUND");
    let (status, v) = s.agent(&fresh, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "INVALID_TOKEN");
    assert_eq!(sandbox_dirs(&s), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_and_filters() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            s.create(json!({"template_name": "base", "internet_access": false}))
                .await
                .0,
        );
    }
    let (_, page1) = s
        .client
        .json(Method::GET, "/v1/sandboxes?limit=2", None)
        .await
        .unwrap();
    assert_eq!(page1["object"], "list");
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = s
        .client
        .json(
            Method::GET,
            &format!("/v1/sandboxes?limit=2&cursor={cursor}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_eq!(page2["has_more"], false);
    assert!(page2["next_cursor"].is_null());
    let seen: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["data"].as_array().unwrap())
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect::<Vec<_>>());

    s.client
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{}/pause", ids[1]),
            None,
        )
        .await
        .unwrap();
    let (_, paused) = s
        .client
        .json(Method::GET, "/v1/sandboxes?status=paused", None)
        .await
        .unwrap();
    assert_eq!(paused["data"].as_array().unwrap().len(), 1);
    assert_eq!(paused["data"][0]["id"], ids[1].as_str());
    for bad in ["limit=0", "limit=abc", "status=deleted", "cursor=xyz"] {
        let (status, v) = s
            .client
            .json(Method::GET, &format!("/v1/sandboxes?{bad}"), None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    for id in ids {
        s.client
            .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sandboxes_are_reaped() {
    let s = TestServer::start().await;
    let (id, _, v) = s
        .create(json!({"template_name": "code-interpreter", "timeout_seconds": 1, "internet_access": false}))
        .await;
    assert!(v["expires_at"].is_string());
    let start = Instant::now();
    loop {
        let (status, _) = s
            .client
            .json(Method::GET, &format!("/v1/sandboxes/{id}"), None)
            .await
            .unwrap();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sandbox_dirs(&s), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_listed_and_protected() {
    let s = TestServer::start().await;
    let (status, v) = s
        .client
        .json(Method::GET, "/v1/templates", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let data = v["data"].as_array().unwrap();
    let ci = data
        .iter()
        .find(|t| t["name"] == "code-interpreter")
        .unwrap();
    assert!(ci["id"].is_string() && ci["display_name"].is_string());
    assert_eq!(ci["is_active"], true);
    assert!(ci["features"].is_array());
    let id = ci["id"].as_str().unwrap();
    for key in ["code-interpreter", id] {
        let (status, t) = s
            .client
            .json(Method::GET, &format!("/v1/templates/{key}"), None)
            .await
            .unwrap();
        assert_eq!(
            (status, t["name"].as_str()),
            (StatusCode::OK, Some("code-interpreter"))
        );
    }
    let (status, v) = s
        .client
        .json(Method::GET, "/v1/templates/nope", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "TEMPLATE_NOT_FOUND");
    let (status, v) = s
        .client
        .json(Method::DELETE, "/v1/templates/code-interpreter", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
}

/// A restart — orderly or a crash — keeps every sandbox, its files and its token.
#[tokio::test(flavor = "multi_thread")]
async fn restart_and_crash_keep_sandboxes_files_and_tokens() {
    let mut s = TestServer::start().await;
    let (id, token, _) = s.create(json!({"template_name": "code-interpreter"})).await;
    s.run(
        &token,
        "echo survived > /workspace/f; nohup sleep 1000 >/dev/null 2>&1 &",
    )
    .await;
    let (paused_id, paused_token, _) = s
        .create(json!({"template_name": "code-interpreter", "internet_access": false}))
        .await;
    s.client
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{paused_id}/pause"),
            None,
        )
        .await
        .unwrap();

    for crash in [false, true] {
        if crash {
            s.crash();
        } else {
            s.stop();
        }
        s.launch().await;
        let (status, v) = s
            .client
            .json(Method::GET, &format!("/v1/sandboxes/{id}"), None)
            .await
            .unwrap();
        assert_eq!(
            (status, v["status"].as_str()),
            (StatusCode::OK, Some("running")),
            "{v}"
        );
        let out = s.run(&token, "cat /workspace/f; pgrep -c sleep").await;
        assert_eq!(
            out["stdout"], "survived\n1\n",
            "processes and files survive"
        );
        let (_, v) = s
            .client
            .json(Method::GET, &format!("/v1/sandboxes/{paused_id}"), None)
            .await
            .unwrap();
        assert_eq!(v["status"], "paused");
    }
    s.client
        .json(
            Method::POST,
            &format!("/v1/sandboxes/{paused_id}/resume"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        s.run(&paused_token, "echo thawed").await["stdout"],
        "thawed\n"
    );
}

/// Creates served from the warm pool look exactly like cold ones: their own id in the agent,
/// their env, their limits and their network.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_creates_take_their_own_identity() {
    let s = TestServer::start().await;
    // Wait for the pool to fill (two warm sandboxes on disk, no records).
    let start = Instant::now();
    while warm_dirs(&s) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pool did not fill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (id, token, v) = s
        .create(json!({
            "template_name": "code-interpreter",
            "env_vars": {"POOLED": "yes"},
            "memory_mb": 256,
            "internet_access": true,
        }))
        .await;
    assert_eq!(v["resources"]["memory_mb"], 256);
    let state: Value = serde_json::from_slice(
        &std::fs::read(s.data_dir().join("sandboxes").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let cgroup = state["process"]["cgroup_dirs"][0].as_str().unwrap_or("");
    assert!(
        cgroup.rsplit('/').next().unwrap_or("").starts_with("warm-"),
        "expected a pooled create: {state}"
    );
    assert!(
        state["process"]["lease"]["host_if"].is_string(),
        "internet attached"
    );

    let (_, info) = s.agent(&token, Method::GET, "/info", None).await;
    assert_eq!(info["vm_id"], id.as_str());
    assert_eq!(info["resources"]["memory_mb"], 256);
    assert_eq!(s.run(&token, "echo $POOLED").await["stdout"], "yes\n");
    let out = s
        .run(
            &token,
            "python3 -c \"print(len(bytearray(400 * 1024 * 1024)))\"; echo rc=$?",
        )
        .await;
    assert!(
        out["stdout"].as_str().unwrap().contains("rc=137"),
        "256 MiB limit: {out}"
    );
    // The pool refills behind the create.
    let start = Instant::now();
    while warm_dirs(&s) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pool did not refill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = s
        .client
        .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}
