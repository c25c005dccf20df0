//! The JavaScript kernel (one Node.js process per context) through the agent API, in real
//! sandboxes: the last expression's value, console capture in order, top-level await,
//! persistence (including re-declared `let`/`const`/`class`), errors with stacks, interrupts,
//! contexts.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{json, Value};

use common::Sandbox;

async fn js(sb: &Sandbox<'_>, code: &str) -> Value {
    let (status, body) = sb
        .post("/execute", json!({"code": code, "language": "javascript"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn ok(sb: &Sandbox<'_>, code: &str) -> Value {
    let body = js(sb, code).await;
    assert_eq!(body["success"], true, "{code}: {body}");
    body
}

#[tokio::test]
async fn values_console_and_persistence() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let first = ok(&sb, "1 + 1").await;
    assert_eq!(first["result"], "2");
    assert_eq!(first["language"], "javascript");

    ok(
        &sb,
        "let count = 41; const name = 'hutch'; function inc(v) { return v + 1 }\nclass Point { constructor(x) { this.x = x } }",
    )
    .await;
    let body = ok(
        &sb,
        "console.log('count', inc(count)); console.error('to stderr'); console.log({a: [1, {b: 2}]})\nnew Point(name.length)",
    )
    .await;
    assert_eq!(body["stdout"], "count 42\n{ a: [ 1, { b: 2 } ] }\n");
    assert_eq!(body["stderr"], "to stderr\n");
    assert_eq!(body["result"], "Point { x: 5 }");

    // Re-running a cell with let/const/class declarations works, like a notebook.
    ok(&sb, "let count = 1; const name = 'again'; class Point {}").await;
    assert_eq!(ok(&sb, "count + name.length").await["result"], "6");

    // console.* methods beyond log, and process.stdout.
    let more = ok(
        &sb,
        "console.info('info'); console.warn('warn'); process.stdout.write('raw\\n'); console.table([{a: 1}])",
    )
    .await;
    assert!(
        more["stdout"].as_str().unwrap().starts_with("info\nraw\n"),
        "{more}"
    );
    assert!(more["stdout"].as_str().unwrap().contains("┌"), "{more}");
    assert_eq!(more["stderr"], "warn\n");

    // Modules through require, relative to the working directory.
    let req = ok(&sb, "const os = require('os'); typeof os.cpus").await;
    assert_eq!(req["result"], "'function'");

    // display() helpers give rich output.
    let shown = ok(
        &sb,
        "display.html('<b>hi</b>'); display.json({k: 1}); 'done'",
    )
    .await;
    assert_eq!(shown["html"], "<b>hi</b>");
    assert_eq!(shown["json"], json!({"k": 1}));
    sb.kill_and_check();
}

#[tokio::test]
async fn top_level_await() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let body = ok(
        &sb,
        "const started = Date.now();\nconst value = await new Promise(r => setTimeout(() => r(21), 50));\nconsole.log('waited');\nvalue * 2",
    )
    .await;
    assert_eq!(body["result"], "42");
    assert_eq!(body["stdout"], "waited\n");
    // Declarations of an awaiting cell persist too.
    assert_eq!(ok(&sb, "value + 1").await["result"], "22");
    let (a, b) = (
        ok(
            &sb,
            "const {x, y: [z]} = await Promise.resolve({x: 1, y: [2]}); x + z",
        )
        .await,
        ok(&sb, "x * 10 + z").await,
    );
    assert_eq!(a["result"], "3");
    assert_eq!(b["result"], "12");
    let imported = ok(&sb, "(await import('node:path')).join('a', 'b')").await;
    assert_eq!(imported["result"], "'a/b'");
    sb.kill_and_check();
}

#[tokio::test]
async fn errors_have_stacks() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let body = js(
        &sb,
        "function deep() {\n  return missing.value;\n}\nconsole.log('before');\ndeep();",
    )
    .await;
    assert_eq!(body["success"], false);
    assert_eq!(body["exit_code"], 1);
    assert_eq!(body["stdout"], "before\n");
    assert_eq!(body["exception"]["name"], "ReferenceError");
    assert_eq!(body["exception"]["value"], "missing is not defined");
    let stderr = body["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("ReferenceError: missing is not defined"),
        "{stderr}"
    );
    assert!(stderr.contains("at deep (<cell-"), "{stderr}");
    assert!(stderr.contains(":2:"), "line 2 of the cell: {stderr}");
    assert!(
        !stderr.contains("node_kernel"),
        "driver frames leak: {stderr}"
    );

    let syntax = js(&sb, "let = ;").await;
    assert_eq!(syntax["exception"]["name"], "SyntaxError");

    let rejected = js(&sb, "await Promise.reject(new TypeError('nope'))").await;
    assert_eq!(rejected["exception"]["name"], "TypeError");
    assert_eq!(rejected["success"], false);

    let thrown = js(&sb, "throw 'plain string'").await;
    assert_eq!(thrown["success"], false);
    assert!(thrown["stderr"].as_str().unwrap().contains("plain string"));
    // The kernel is fine afterwards.
    assert_eq!(ok(&sb, "'alive'").await["result"], "'alive'");
    sb.kill_and_check();
}

#[tokio::test]
async fn timeout_interrupts_and_the_kernel_survives() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    ok(&sb, "var kept = 'yes'").await;
    let start = Instant::now();
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "console.log('spinning'); while (true) {}", "language": "javascript", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "EXECUTION_TIMEOUT");
    assert_eq!(body["kernel_restarted"], false, "{body}");
    assert_eq!(body["stdout"], "spinning\n");
    assert!(start.elapsed() < Duration::from_millis(2500));
    assert_eq!(ok(&sb, "kept").await["result"], "'yes'");

    // Awaiting forever is interrupted the same way.
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "await new Promise(() => {})", "language": "js", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["kernel_restarted"], false, "{body}");

    // A callback that never yields cannot be interrupted: the kernel is replaced.
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "setTimeout(() => { for (;;) {} }, 0); await new Promise(r => setTimeout(r, 60000))", "language": "node", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["kernel_restarted"], true, "{body}");
    assert_eq!(js(&sb, "kept").await["exception"]["name"], "ReferenceError");
    assert_eq!(ok(&sb, "2 * 21").await["result"], "42");
    sb.kill_and_check();
}

#[tokio::test]
async fn contexts_are_isolated() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let (status, a) = sb
        .post("/contexts", json!({"language": "javascript"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["language"], "javascript");
    let a = a["id"].as_str().unwrap().to_string();
    let run = |ctx: Option<&str>, code: &str| {
        let mut body = json!({"code": code, "language": "javascript"});
        if let Some(c) = ctx {
            body["context_id"] = json!(c);
        }
        let sb = &sb;
        async move {
            let (status, v) = sb.post("/execute", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v
        }
    };
    run(Some(&a), "var where = 'context a'").await;
    run(None, "var where = 'default'").await;
    assert_eq!(run(Some(&a), "where").await["result"], "'context a'");
    assert_eq!(run(None, "where").await["result"], "'default'");
    sb.kill_and_check();
}
