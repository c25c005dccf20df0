//! Template builds through the API on a real server: a TOML spec built with mmdebstrap,
//! sandboxes started from it, failures that leave nothing behind, refusals, deletion, and a
//! build interrupted by a crash.
//!
//! The one real bootstrap of the suite is `templates/minimal.toml`'s base (bookworm + python3,
//! pip, venv — the same base the HopX `python:3.11` test uses). Servers here share the base
//! cache `CACHE`, keyed by everything the base depends on (suite, variant, packages, mirror,
//! uid base, hutch version, bootstrap format), so it survives across runs without going stale:
//! a cold run bootstraps once (about a minute), a warm one builds each template in about a
//! second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::TestServer;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// Base cache shared by every test server and every run on this machine.
const CACHE: &str = "/var/cache/hutch-test-templates";

/// Keys the HopX SDK accepts in a build status (its dataclass rejects any other).
const STATUS_KEYS: &[&str] = &[
    "build_id",
    "template_id",
    "status",
    "progress",
    "started_at",
    "current_step",
    "completed_at",
    "error_message",
    "build_duration_ms",
    "request_id",
];

async fn server() -> TestServer {
    TestServer::start_with_env(&[("HUTCH_TEMPLATE_CACHE", CACHE)]).await
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

/// `templates/minimal.toml` with top-level keys added before its first table.
fn minimal_with(top: &str, tables: &str) -> String {
    let spec = std::fs::read_to_string(templates_dir().join("minimal.toml")).unwrap();
    let (head, rest) = spec.split_at(spec.find("\n[").unwrap() + 1);
    format!("{head}{top}\n{rest}\n{tables}\n")
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

async fn start_build(s: &TestServer, name: &str, spec: &str, force: bool) -> (StatusCode, Value) {
    s.client
        .json(
            Method::POST,
            "/v1/templates/builds",
            Some(&json!({"name": name, "spec": spec, "force": force})),
        )
        .await
        .unwrap()
}

/// Polls a build's status until it leaves `building`; checks every reply's keys on the way.
async fn wait_build(s: &TestServer, build_id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (st, v) = s
            .client
            .json(
                Method::GET,
                &format!("/v1/templates/build/{build_id}/status"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(st, StatusCode::OK, "{v}");
        for k in keys(&v) {
            assert!(
                STATUS_KEYS.contains(&k.as_str()),
                "unexpected key {k} in {v}"
            );
        }
        let p = v["progress"].as_u64().unwrap();
        assert!(p <= 100, "{v}");
        if v["status"] != "building" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "build did not finish: {v}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn logs(s: &TestServer, id: &str, offset: u64) -> Value {
    let (st, v) = s
        .client
        .json(
            Method::GET,
            &format!("/v1/templates/build/{id}/logs?offset={offset}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn template(s: &TestServer, name: &str) -> (StatusCode, Value) {
    s.client
        .json(Method::GET, &format!("/v1/templates/{name}"), None)
        .await
        .unwrap()
}

/// What a build left in the data directory's staging area (must be nothing once it ended).
fn staging_entries(s: &TestServer) -> Vec<String> {
    std::fs::read_dir(s.data_dir().join("templates/.tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_spec_builds_a_template_that_sandboxes_start_from() {
    let s = server().await;
    let spec = minimal_with(
        "run = [\"echo built > /etc/built-by-hutch\", \"python3 -c 'print(6 * 7)'\"]\n\
         workdir = \"/srv/app\"",
        "[env]\nGREETING = \"hi there\"\n\n[[files]]\ndest = \"/opt/hello.txt\"\n\
         content = \"hello from the spec\\n\"\n\n[[files]]\ndest = \"/srv/app/tool.sh\"\n\
         content = \"#!/bin/sh\\necho tool\\n\"\nmode = \"0755\"\n",
    );
    let t0 = Instant::now();
    let (st, started) = start_build(&s, "mini", &spec, false).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{started}");
    let mut k = keys(&started);
    k.sort();
    assert_eq!(
        k,
        [
            "build_id",
            "logs_url",
            "request_id",
            "status",
            "template_id"
        ]
    );
    assert_eq!(started["status"], "building");
    let build_id = started["build_id"].as_str().unwrap().to_string();
    let template_id = started["template_id"].as_str().unwrap().to_string();
    assert!(started["logs_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v1/templates/build/{build_id}/logs")));

    let done = wait_build(&s, &build_id).await;
    eprintln!(
        "minimal template built in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(done["status"], "active", "{done}\n{}", s.log());
    assert_eq!(done["progress"], 100);
    assert_eq!(done["template_id"], template_id.as_str());
    assert!(done["build_duration_ms"].as_u64().is_some(), "{done}");
    assert!(done["completed_at"].as_str().unwrap().ends_with('Z'));
    assert!(done.get("estimated_completion").is_none());

    // The log, by build id and by template id (how the SDK asks), read to the end.
    let by_build = logs(&s, &build_id, 0).await;
    let text = by_build["logs"].as_str().unwrap();
    assert!(text.contains("RUN echo built"), "{text}");
    assert!(text.contains("✅"), "{text}");
    assert_eq!(by_build["complete"], true);
    assert_eq!(by_build["status"], "active");
    assert_eq!(logs(&s, &template_id, 0).await["logs"], by_build["logs"]);
    let end = by_build["offset"].as_u64().unwrap();
    assert_eq!(end, text.len() as u64);
    assert_eq!(logs(&s, &build_id, end).await["logs"], "");

    // The name is taken now.
    let (st, v) = start_build(&s, "mini", &spec, false).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("force"));

    // Listed and found by name and id, active.
    let (_, list) = s
        .client
        .json(Method::GET, "/v1/templates", None)
        .await
        .unwrap();
    let entry = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mini")
        .unwrap()
        .clone();
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["is_active"], true);
    assert_eq!(entry["id"], template_id.as_str());
    assert_eq!(entry["build_id"], build_id.as_str());
    assert_eq!(entry["default_resources"]["memory_mb"], 512);
    assert_eq!(template(&s, &template_id).await.1["name"], "mini");

    // On disk: one self-contained root, shifted to the sandbox's uid range, without the build
    // sandbox's agent state.
    let versions: Vec<PathBuf> = std::fs::read_dir(s.data_dir().join("templates/mini"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let rootfs = versions[0].join("rootfs");
    assert!(rootfs.join("etc/built-by-hutch").is_file());
    assert!(!rootfs.join("var/lib/hutch-agent").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(rootfs.join("etc/passwd")).unwrap().uid(),
        100_000
    );

    // A sandbox from it: python3 from the template, the files, the env, the working directory.
    let (id, token, body) = s.create(json!({"template_name": "mini"})).await;
    assert_eq!(body["template_id"], template_id.as_str());
    assert_eq!(body["resources"]["memory_mb"], 512);
    let out = s
        .run(
            &token,
            "python3 -c 'import sys; print(sys.version_info[:2])'; cat /opt/hello.txt \
             /etc/built-by-hutch; echo \"$GREETING\"; /srv/app/tool.sh; id -u; \
             stat -c %U /etc/passwd; touch /etc/new-file && echo etc-writable",
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(
        out["stdout"],
        "(3, 11)\nhello from the spec\nbuilt\nhi there\ntool\n0\nroot\netc-writable\n",
        "{out}"
    );
    let (st, v) = s
        .agent(
            &token,
            Method::POST,
            "/execute",
            Some(json!({"code": "import os\nprint(os.environ['GREETING'], os.getcwd())", "language": "python"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stdout"], "hi there /srv/app\n", "{v}");
    // By id too.
    let (id2, _, _) = s.create(json!({"template_id": template_id})).await;

    // Not deletable while sandboxes use it; gone, files and all, once they are.
    let (st, v) = s
        .client
        .json(Method::DELETE, "/v1/templates/mini", None)
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    for sb in [&id, &id2] {
        let (st, _) = s
            .client
            .json(Method::DELETE, &format!("/v1/sandboxes/{sb}"), None)
            .await
            .unwrap();
        assert_eq!(st, StatusCode::OK);
    }
    assert!(s.data_dir().join("templates/mini").is_dir());
    let (st, v) = s
        .client
        .json(Method::DELETE, "/v1/templates/mini", None)
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "deleted");
    assert_eq!(template(&s, "mini").await.0, StatusCode::NOT_FOUND);
    assert!(!s.data_dir().join("templates/mini").exists());
    assert!(staging_entries(&s).is_empty());
}

#[tokio::test]
async fn a_failing_command_fails_the_build_and_leaves_nothing() {
    let s = server().await;
    let spec = minimal_with("run = [\"echo before\", \"exit 3\"]", "");
    let (st, started) = start_build(&s, "broken", &spec, false).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{started}");
    let build_id = started["build_id"].as_str().unwrap().to_string();
    let done = wait_build(&s, &build_id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let msg = done["error_message"].as_str().unwrap();
    assert!(
        msg.contains("step 2/2") && msg.contains("RUN exit 3") && msg.contains("code 3"),
        "{msg}"
    );
    assert!(done["current_step"].as_str().unwrap().contains("commands"));
    assert!(
        done["progress"].as_u64().unwrap() > 0,
        "progress kept: {done}"
    );

    // Nothing half-made: no template directory, no staging, not active.
    assert!(!s.data_dir().join("templates/broken").exists());
    assert!(staging_entries(&s).is_empty(), "{:?}", staging_entries(&s));
    let (st, t) = template(&s, "broken").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["status"], "failed");
    assert_eq!(t["is_active"], false);
    let (st, v) = s
        .client
        .json(
            Method::POST,
            "/v1/sandboxes",
            Some(&json!({"template_name": "broken"})),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // The log is kept and says why.
    let l = logs(&s, &build_id, 0).await;
    let text = l["logs"].as_str().unwrap();
    assert!(
        text.contains("before") && text.contains("❌ ERROR"),
        "{text}"
    );
    assert_eq!(l["complete"], true);

    // A failed template does not hold its name: the next build of it may go ahead.
    let (st, v) = start_build(&s, "broken", &minimal_with("", ""), false).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let done = wait_build(&s, v["build_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "active", "{done}");
    assert_eq!(template(&s, "broken").await.1["is_active"], true);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let s = server().await;
    let refused = [
        ("t", "this is = = not toml", "invalid template spec"),
        ("t", "colour = \"blue\"\n", "colour"),
        ("t", "[base]\npackages = [\"python3,curl\"]\n", "package"),
        (
            "t",
            "[[files]]\ndest = \"/x\"\nsource = \"x.txt\"\n",
            "files[0].source",
        ),
        ("Not A Name", "", "template name"),
        ("builds", "", "reserved"),
    ];
    for (name, spec, want) in refused {
        let (st, v) = start_build(&s, name, spec, false).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{spec}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{spec}: {msg}");
    }
    let (st, v) = s
        .client
        .json(
            Method::POST,
            "/v1/templates/builds",
            Some(&json!({"name": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A built-in's name needs force; built-ins cannot be deleted.
    let (st, v) = start_build(&s, "code-interpreter", "", false).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = s
        .client
        .json(Method::DELETE, "/v1/templates/code-interpreter", None)
        .await
        .unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);
    for path in [
        "/v1/templates/build/bld-nope/status",
        "/v1/templates/build/bld-nope/logs",
    ] {
        let (st, _) = s.client.json(Method::GET, path, None).await.unwrap();
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    // No API key, no build.
    let r = hutch_client::ControlClient::new(&s.url, None)
        .unwrap()
        .send(Method::POST, "/v1/templates/builds", None, &[])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(staging_entries(&s).is_empty());
}

#[tokio::test]
async fn a_build_interrupted_by_a_crash_is_failed_at_the_next_start() {
    let mut s = server().await;
    let spec = minimal_with("run = [\"sleep 120\"]", "");
    let (st, started) = start_build(&s, "interrupted", &spec, false).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{started}");
    let build_id = started["build_id"].as_str().unwrap().to_string();
    // Wait until the command runs (after the base, which another test may be bootstrapping).
    let start = Instant::now();
    loop {
        let (_, v) = s
            .client
            .json(
                Method::GET,
                &format!("/v1/templates/build/{build_id}/status"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(v["status"], "building", "{v}");
        if v["current_step"]
            .as_str()
            .is_some_and(|c| c.contains("sleep"))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(900), "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!staging_entries(&s).is_empty());
    s.crash();
    s.launch().await;
    let (_, v) = s
        .client
        .json(
            Method::GET,
            &format!("/v1/templates/build/{build_id}/status"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["error_message"]
            .as_str()
            .unwrap()
            .contains("server stopped"),
        "{v}"
    );
    assert!(staging_entries(&s).is_empty(), "{:?}", staging_entries(&s));
    assert!(!s.data_dir().join("templates/interrupted").exists());
    // The build sandbox went with it.
    let left: Vec<_> = std::fs::read_dir(s.data_dir().join("sandboxes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(template(&s, "interrupted").await.1["status"], "failed");
}
