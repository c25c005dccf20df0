//! The agent's `/env` API (spec §9.2) against real sandboxes: changes reach every later process,
//! values are never masked, bad names and values are refused with the spec's error shape, and
//! the variables survive an agent crash and a sandbox stop/start.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Sandbox, TestEnv};
use hutch_runtime::Backend;
use hutch_types::AgentBoot;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn assert_error(status: StatusCode, body: &Value, want: u16, code: &str) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert!(body["error"].is_string(), "error must be a string: {body}");
    assert_eq!(body["code"], code, "{body}");
}

/// A sandbox created with these `env_vars`.
async fn sandbox_with_vars<'a>(env: &'a TestEnv, vars: &[(&str, &str)]) -> Sandbox<'a> {
    let boot = AgentBoot {
        env_vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..AgentBoot::default()
    };
    env.sandbox_with(|spec| spec.boot = serde_json::to_value(&boot).expect("boot JSON"))
        .await
}

/// What a fresh shell in the sandbox prints for `script`.
async fn shell(sb: &Sandbox<'_>, script: &str) -> String {
    let out = sb.sh(script).await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn set_merge_replace_delete_reach_later_processes() {
    let env = TestEnv::new();
    let sb = sandbox_with_vars(&env, &[("BOOT_A", "from create")]).await;

    let (st, body) = sb.get("/env").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["env_vars"], json!({"BOOT_A": "from create"}));
    assert_eq!(body["count"], 1);
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(shell(&sb, "echo \"$BOOT_A\"").await, "from create\n");

    // PATCH merges; values with shell metacharacters and secrets-looking names come back as is.
    let tricky = "it's a \"test\" $HOME `x` ünï\ttab";
    let (st, body) = sb
        .request(
            Method::PATCH,
            "/env",
            Some(json!({"env_vars": {"X": "hello world", "API_KEY": tricky}, "merge": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["env_vars"],
        json!({"BOOT_A": "from create", "X": "hello world", "API_KEY": tricky})
    );
    assert_eq!(body["count"], 3);
    assert_eq!(shell(&sb, "echo \"$X\"").await, "hello world\n");
    assert_eq!(shell(&sb, "printenv API_KEY").await, format!("{tricky}\n"));
    let (_, body) = sb.get("/env").await;
    assert_eq!(body["env_vars"]["API_KEY"], tricky, "never masked");

    // Base variables can be overridden.
    sb.request(
        Method::PATCH,
        "/env",
        Some(json!({"env_vars": {"LANG": "C"}, "merge": true})),
    )
    .await;
    assert_eq!(shell(&sb, "echo $LANG").await, "C\n");

    // PUT replaces everything.
    let (st, body) = sb
        .request(
            Method::PUT,
            "/env",
            Some(json!({"env_vars": {"Y": "2", "N": 5}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["env_vars"], json!({"Y": "2", "N": "5"}));
    assert_eq!(
        shell(&sb, "echo \"[$X][$Y][$BOOT_A][$N]\"").await,
        "[][2][][5]\n"
    );

    // What the SDK's env.delete(k) does: GET, then PUT the rest.
    let (_, body) = sb.get("/env").await;
    let mut rest = body["env_vars"].as_object().unwrap().clone();
    rest.remove("Y");
    let (st, body) = sb
        .request(Method::PUT, "/env", Some(json!({"env_vars": rest})))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["env_vars"], json!({"N": "5"}));

    // DELETE one, then all.
    let (st, body) = sb.request(Method::DELETE, "/env/N", None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["env_vars"], json!({}));
    sb.request(Method::PATCH, "/env", Some(json!({"env_vars": {"Z": "1"}})))
        .await;
    let (st, body) = sb.request(Method::DELETE, "/env", None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["env_vars"], json!({}));
    assert_eq!(body["count"], 0);
    assert_eq!(shell(&sb, "echo \"[$Z]\"").await, "[]\n");

    sb.kill_and_check();
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    sb.request(
        Method::PATCH,
        "/env",
        Some(json!({"env_vars": {"KEEP": "1"}, "merge": true})),
    )
    .await;

    for name in ["1ABC", "A-B", "A B", "A=B", ""] {
        let (st, body) = sb
            .request(
                Method::PATCH,
                "/env",
                Some(json!({"env_vars": {name: "v"}, "merge": true})),
            )
            .await;
        assert_error(st, &body, 400, "INVALID_REQUEST");
        assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
    }
    let (st, body) = sb
        .request(
            Method::PUT,
            "/env",
            Some(json!({"env_vars": {"A": "x\u{0}y"}})),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body) = sb
        .request(
            Method::PUT,
            "/env",
            Some(json!({"env_vars": {"A": {"nested": 1}}})),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body) = sb
        .request(
            Method::PUT,
            "/env",
            Some(json!({"env_vars": {"A": "x".repeat(200 * 1024)}})),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body) = sb
        .request(Method::PUT, "/env", Some(json!({"vars": {}})))
        .await;
    assert_error(st, &body, 400, "MISSING_PARAMETER");
    let (st, body) = sb.request(Method::PUT, "/env", Some(json!(["A"]))).await;
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body) = sb.request(Method::PATCH, "/env", None).await;
    assert_error(st, &body, 400, "INVALID_JSON");

    let (_, body) = sb.get("/env").await;
    assert_eq!(body["env_vars"], json!({"KEEP": "1"}));

    sb.kill_and_check();
}

/// The agent's host pid: the child of the sandbox's PID 1 named `hutch:[agent]`.
fn agent_pid(sb: &Sandbox<'_>) -> Option<i32> {
    let pid1 = sb.pid1();
    let children = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &i32| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "hutch:[agent]")
        })
}

#[tokio::test]
async fn vars_survive_an_agent_restart() {
    let env = TestEnv::new();
    let sb = sandbox_with_vars(&env, &[("BOOT_A", "1"), ("BOOT_B", "2")]).await;
    let (st, _) = sb
        .request(
            Method::PATCH,
            "/env",
            Some(json!({"env_vars": {"KEPT": "yes"}, "merge": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Deleting a create-time variable must stick too.
    sb.request(Method::DELETE, "/env/BOOT_A", None).await;

    let old = agent_pid(&sb).expect("agent running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(new) = agent_pid(&sb) {
            if new != old && sb.agent.health(Duration::from_secs(1)).await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "agent not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, body) = sb.get("/env").await;
    assert_eq!(body["env_vars"], json!({"BOOT_B": "2", "KEPT": "yes"}));
    assert_eq!(
        shell(&sb, "echo \"[$KEPT][$BOOT_A][$BOOT_B]\"").await,
        "[yes][][2]\n"
    );

    sb.kill_and_check();
}

#[tokio::test]
async fn vars_survive_stop_and_start() {
    let env = TestEnv::new();
    let sb = sandbox_with_vars(&env, &[("BOOT_A", "1")]).await;
    let (st, _) = sb
        .request(
            Method::PUT,
            "/env",
            Some(json!({"env_vars": {"AFTER": "restart ok"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    env.backend
        .stop(&sb.id, Duration::from_secs(1))
        .expect("stop");
    env.backend.start(&sb.id).expect("start");
    sb.agent
        .health(Duration::from_secs(10))
        .await
        .expect("agent healthy after start");

    let (_, body) = sb.get("/env").await;
    assert_eq!(body["env_vars"], json!({"AFTER": "restart ok"}));
    assert_eq!(
        shell(&sb, "echo \"[$AFTER][$BOOT_A]\"").await,
        "[restart ok][]\n"
    );

    sb.kill_and_check();
}
