//! The HopX SDK's template build flow (`spec` §6.11) over raw HTTP, as `Template.build()` sends
//! it: upload link → `PUT` of the files without an API key → build from `python:3.11` with
//! COPY, ENV, WORKDIR and RUN steps → status polling → the template active → a sandbox from it
//! by template id. Its base is the same as `templates/minimal.toml`'s, from the shared cache
//! (see `templates_build.rs`), so this suite bootstraps at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::TestServer;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CACHE: &str = "/var/cache/hutch-test-templates";

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// A tar.gz of a small build context, made the way the SDK makes it (paths relative to the
/// context, directories included).
fn context_archive() -> Vec<u8> {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("app/lib")).unwrap();
    std::fs::write(
        ctx.path().join("app/main.py"),
        "import os\nprint('app says', os.environ['APP_MODE'])\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("app/lib/util.py"), "X = 1\n").unwrap();
    std::fs::write(ctx.path().join("data.txt"), "some data\n").unwrap();
    let out = ctx.path().join("ctx.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(ctx.path())
        .args(["-czf"])
        .arg(&out)
        .args(["app", "data.txt"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn hopx_template_build_flow_over_raw_http() {
    let s = TestServer::start_with_env(&[("HUTCH_TEMPLATE_CACHE", CACHE)]).await;
    let archive = context_archive();
    let hash = hex::encode(Sha256::digest(b"the SDK hashes the files, not the archive"));

    // 1. Upload link: only the keys the SDK's dataclass accepts.
    let (st, link) = s
        .client
        .json(
            Method::POST,
            "/v1/templates/files/upload-link",
            Some(&json!({"files_hash": hash, "content_length": archive.len()})),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{link}");
    for k in keys(&link) {
        assert!(
            [
                "present",
                "upload_url",
                "expires_at",
                "files_hash",
                "request_id"
            ]
            .contains(&k.as_str()),
            "{k} in {link}"
        );
    }
    assert_eq!(link["present"], false);
    let url = link["upload_url"].as_str().unwrap();
    let path = url
        .strip_prefix(&s.url)
        .expect("the upload URL is this server");
    let anonymous = hutch_client::ControlClient::new(&s.url, None).unwrap();

    // A wrong token is refused; the SDK's PUT (no API key) is taken.
    let forged = format!("{}?token=0000", path.split('?').next().unwrap());
    let r = anonymous
        .send(
            Method::PUT,
            &forged,
            Some(Bytes::from(archive.clone())),
            &[("content-type", "application/gzip")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = anonymous
        .send(
            Method::PUT,
            path,
            Some(Bytes::from(archive.clone())),
            &[("content-type", "application/gzip")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let (_, again) = s
        .client
        .json(
            Method::POST,
            "/v1/templates/files/upload-link",
            Some(&json!({"files_hash": hash, "content_length": archive.len()})),
        )
        .await
        .unwrap();
    assert_eq!(again["present"], true, "{again}");
    assert!(again.get("upload_url").is_none());

    // 2. The build, as the SDK sends it.
    let request = json!({
        "name": "sdk-python",
        "from_image": "python:3.11",
        "steps": [
            {"type": "ENV", "args": ["APP_MODE", "test"]},
            {"type": "WORKDIR", "args": ["/app"]},
            {"type": "COPY", "args": ["app/,data.txt", "."], "filesHash": hash},
            {"type": "RUN", "args": ["python3 main.py > out.txt && ls /usr/local/bin/pip3"]},
        ],
        "startCmd": null,
        "readyCmd": null,
        "cpu": 2,
        "memory": 1024,
        "diskGB": 5,
        "skipCache": false,
        "update": false,
    });
    let t0 = Instant::now();
    let (st, started) = s
        .client
        .json(Method::POST, "/v1/templates/build", Some(&request))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{started}");
    assert_eq!(
        keys(&started),
        [
            "build_id",
            "logs_url",
            "request_id",
            "status",
            "template_id"
        ]
    );
    let build_id = started["build_id"].as_str().unwrap().to_string();
    let template_id = started["template_id"].as_str().unwrap().to_string();

    // 3. Logs by template id (what the SDK asks with), JSON.
    let (st, l) = s
        .client
        .json(
            Method::GET,
            &format!("/v1/templates/build/{template_id}/logs?offset=0"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{l}");
    assert_eq!(
        keys(&l),
        ["complete", "logs", "offset", "request_id", "status"]
    );

    // 4. Status until done; every reply within the SDK's key set.
    let allowed = [
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
    let done = loop {
        let (st, v) = s
            .client
            .json(
                Method::GET,
                &format!("/v1/templates/build/{build_id}/status"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(st, StatusCode::OK);
        for k in keys(&v) {
            assert!(allowed.contains(&k.as_str()), "{k} in {v}");
        }
        for k in [
            "build_id",
            "template_id",
            "status",
            "progress",
            "started_at",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        if v["status"] != "building" {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(900), "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("HopX build took {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(done["status"], "active", "{done}\n{}", s.log());

    // 5. The template is active, by id.
    let (st, t) = s
        .client
        .json(Method::GET, &format!("/v1/templates/{template_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["status"], "active");
    assert_eq!(t["is_active"], true);
    assert_eq!(t["name"], "sdk-python");
    assert_eq!(t["default_resources"]["vcpu"], 2);

    // 6. A sandbox from it by template id.
    let (_, token, body) = s.create(json!({"template_id": template_id})).await;
    assert_eq!(body["template_name"], "sdk-python");
    let out = s
        .run(
            &token,
            "cat /app/out.txt /app/data.txt /app/lib/util.py; echo $APP_MODE; \
             /usr/local/bin/python3 -c 'print(1 + 1)'",
        )
        .await;
    assert_eq!(
        out["stdout"], "app says test\nsome data\nX = 1\ntest\n2\n",
        "{out}"
    );
}

#[tokio::test]
async fn images_hutch_cannot_build_are_refused_naming_those_it_can() {
    let s = TestServer::start_with_env(&[("HUTCH_TEMPLATE_CACHE", CACHE)]).await;
    for image in ["ubuntu:22.04", "python:3.12", "node:20", "alpine:3"] {
        let (st, v) = s
            .client
            .json(
                Method::POST,
                "/v1/templates/build",
                Some(&json!({
                    "name": "nope",
                    "from_image": image,
                    "steps": [{"type": "RUN", "args": ["true"]}],
                })),
            )
            .await
            .unwrap();
        assert_eq!(st, StatusCode::BAD_REQUEST, "{image}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        for supported in ["debian:bookworm", "python:3.11", "node:18", image] {
            assert!(msg.contains(supported), "{image}: {msg}");
        }
    }
    // A COPY of files never uploaded, and an unknown step, are refused before anything runs.
    let (st, v) = s
        .client
        .json(
            Method::POST,
            "/v1/templates/build",
            Some(&json!({
                "name": "nope",
                "from_image": "debian:bookworm",
                "steps": [{"type": "COPY", "args": ["a", "/a"], "filesHash": "ab".repeat(32)}],
            })),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not uploaded"));
    let (st, v) = s
        .client
        .json(
            Method::POST,
            "/v1/templates/build",
            Some(&json!({
                "name": "nope",
                "from_image": "debian",
                "steps": [{"type": "HEALTHCHECK", "args": ["x"]}],
            })),
        )
        .await
        .unwrap();
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, list) = s
        .client
        .json(Method::GET, "/v1/templates", None)
        .await
        .unwrap();
    assert!(!list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "nope"));
}
