//! The agent's `/files/*` API (spec §9.1, §10.3) against real sandboxes: what the API writes,
//! code in the sandbox reads, and the reverse; raw bytes survive every path; errors carry the
//! spec's codes; the watch socket reports changes and frees its inotify instance on close.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Sandbox, TestEnv};
use futures_util::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A response read off the raw socket.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One HTTP/1.1 request with an arbitrary body and content type (the harness only sends JSON),
/// read to the end (`Connection: close`), chunked bodies decoded.
async fn raw(sb: &Sandbox<'_>, method: &str, path: &str, ctype: Option<&str>, body: &[u8]) -> Raw {
    let mut s = tokio::net::UnixStream::connect(sb.agent.socket())
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = ctype {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("send head");
    s.write_all(body).await.expect("send body");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read response");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8(buf[..split].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size_text = std::str::from_utf8(&data[..eol]).expect("chunk size text");
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Form-encodes a query value the way the SDK's httpx does (space → `+`, `+` → `%2B`).
fn q(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        match b {
            b' ' => out.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn download(sb: &Sandbox<'_>, path: &str) -> Raw {
    raw(
        sb,
        "GET",
        &format!("/files/download?path={}", q(path)),
        None,
        b"",
    )
    .await
}

/// A multipart/form-data body: text fields, then one file part.
fn multipart(
    boundary: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
    file_first: bool,
) -> Vec<u8> {
    let mut text = Vec::new();
    for (name, value) in fields {
        text.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    let mut part = Vec::new();
    if let Some((filename, data)) = file {
        part.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        part.extend_from_slice(data);
        part.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::new();
    if file_first {
        out.extend(part);
        out.extend(text);
    } else {
        out.extend(text);
        out.extend(part);
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Checks the agent error shape (spec §4.4) and returns the body.
fn assert_error(status: StatusCode, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert!(body["error"].is_string(), "error must be a string: {body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Python's `b64encode` (the test crate has no base64 crate).
fn b64encode(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64decode(text: &str) -> Vec<u8> {
    let vals: Vec<u32> = text
        .bytes()
        .filter(|&b| b != b'=')
        .map(|b| B64.iter().position(|&x| x == b).expect("base64 digit") as u32)
        .collect();
    let mut out = Vec::new();
    for c in vals.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, v)| n | v << (18 - 6 * i));
        for i in 0..c.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Bytes that are not valid UTF-8 and not base64-looking (spec §9.1's client heuristic).
fn binary_blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn text_round_trip_and_shell_visibility() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;

    let text = "héllo wörld ✓ 日本語 🦀\nline two\n";
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/dir/uni.txt", "content": text}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["path"], "/workspace/dir/uni.txt");
    assert_eq!(body["size"], text.len());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    let (st, body) = sb
        .get("/files/read?path=%2Fworkspace%2Fdir%2Funi.txt")
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["content"], text);
    assert_eq!(body["size"], text.len());
    assert_eq!(body["path"], "/workspace/dir/uni.txt");

    // Written through the API, read by code in the sandbox, and the reverse.
    let out = sb.sh("cat /workspace/dir/uni.txt").await;
    assert_eq!(out.stdout, text);
    let out = sb
        .sh("printf 'from the shell ✓\\n' > '/workspace/a b+c.txt'; stat -c %U /workspace/dir/uni.txt")
        .await;
    assert_eq!(
        out.stdout.trim(),
        "root",
        "files the agent writes belong to sandbox root"
    );
    let (st, body) = sb
        .get(&format!("/files/read?path={}", q("/workspace/a b+c.txt")))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["content"], "from the shell ✓\n");

    // Relative paths are taken from /workspace; the mode is applied exactly.
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "rel/run.sh", "content": "#!/bin/sh\necho ran\n", "mode": "0755"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/workspace/rel/run.sh");
    let out = sb
        .sh("stat -c %a /workspace/rel/run.sh && /workspace/rel/run.sh")
        .await;
    assert_eq!(out.stdout, "755\nran\n");
    // Default mode of a new file is 0644.
    assert_eq!(
        sb.sh("stat -c %a /workspace/dir/uni.txt").await.stdout,
        "644\n"
    );

    // Overwrite truncates; overwrite=false refuses.
    let (st, _) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/dir/uni.txt", "content": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(sb.sh("cat /workspace/dir/uni.txt").await.stdout, "x");
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/dir/uni.txt", "content": "y", "overwrite": false}),
        )
        .await;
    assert_error(st, &body, 409, "FILE_ALREADY_EXISTS");

    // An empty file.
    let (st, _) = sb
        .post("/files/write", json!({"path": "/tmp/empty", "content": ""}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, body) = sb.get("/files/read?path=/tmp/empty").await;
    assert_eq!(body["content"], "");
    assert_eq!(body["size"], 0);

    sb.kill_and_check();
}

#[tokio::test]
async fn binary_base64_write_and_download_are_byte_exact() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;

    let data = binary_blob(300_000);
    let b64 = b64encode(&data);
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/bin/blob.bin", "content": b64, "encoding": "base64", "mode": "0600"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["size"], data.len());

    let r = download(&sb, "/workspace/bin/blob.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "download differs from what was written");

    // Code in the sandbox sees the decoded bytes.
    let out = sb
        .sh("sha256sum /workspace/bin/blob.bin; stat -c %a /workspace/bin/blob.bin")
        .await;
    assert!(out.stdout.starts_with(&sha256(&data)), "{}", out.stdout);
    assert!(out.stdout.ends_with("600\n"));

    // read: lossy text by default, exact bytes on request.
    let (_, body) = sb.get("/files/read?path=/workspace/bin/blob.bin").await;
    assert_eq!(body["lossy"], true);
    assert_eq!(body["size"], data.len());
    let (_, body) = sb
        .get("/files/read?path=/workspace/bin/blob.bin&encoding=base64")
        .await;
    assert_eq!(body["encoding"], "base64");
    let back = b64decode(body["content"].as_str().unwrap());
    assert!(back == data);

    // A big file written in the sandbox streams out intact (with a Content-Length).
    let out = sb
        .sh("head -c 24M /dev/urandom > /workspace/big.bin && sha256sum /workspace/big.bin")
        .await;
    let want = out.stdout.split_whitespace().next().unwrap().to_string();
    let r = download(&sb, "/workspace/big.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 24 << 20);
    assert_eq!(sha256(&r.body), want);

    // Pseudo-files have no size; they stream until they end.
    let r = download(&sb, "/proc/self/status").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Name:"));

    sb.kill_and_check();
}

#[tokio::test]
async fn upload_multipart_then_download() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    let boundary = "----hutchBoundary7MA4YWxk";

    // Larger than axum's default 2 MiB body limit, with bytes that look like (but are not) a
    // delimiter, which is CRLF + "--" + boundary.
    let mut data = binary_blob(3 * 1024 * 1024 + 17);
    data.extend_from_slice(format!("x--{boundary}--\r\n\n--{boundary}").as_bytes());
    data.extend_from_slice(&binary_blob(1000));
    let body = multipart(
        boundary,
        &[("path", "/workspace/up/deep/file.bin")],
        Some(("local.bin", &data)),
        false,
    );
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(j["path"], "/workspace/up/deep/file.bin");
    assert_eq!(j["size"], data.len());

    let r = download(&sb, "/workspace/up/deep/file.bin").await;
    assert_eq!(r.status, 200);
    assert!(r.body == data, "uploaded bytes differ");
    let out = sb.sh("sha256sum /workspace/up/deep/file.bin; stat -c %a /workspace/up/deep/file.bin; ls -A /workspace/up/deep").await;
    assert!(out.stdout.starts_with(&sha256(&data)), "{}", out.stdout);
    assert!(
        out.stdout.ends_with("644\nfile.bin\n"),
        "no staging file left: {}",
        out.stdout
    );

    // Into a directory (trailing slash), file part before the path part, text content.
    let text = "uploaded text, not base64-looking\n".as_bytes();
    let body = multipart(
        boundary,
        &[("path", "/workspace/updir/")],
        Some(("notes.txt", text)),
        true,
    );
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["path"], "/workspace/updir/notes.txt");
    let (_, j) = sb.get("/files/read?path=/workspace/updir/notes.txt").await;
    assert_eq!(j["content"], "uploaded text, not base64-looking\n");
    assert_eq!(
        sb.sh("ls -A /workspace")
            .await
            .stdout
            .lines()
            .filter(|l| l.starts_with(".hutch"))
            .count(),
        0
    );

    // Replacing an existing file.
    let body = multipart(
        boundary,
        &[("path", "/workspace/updir/notes.txt")],
        Some(("x", b"v2 \n")),
        false,
    );
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sb.sh("cat /workspace/updir/notes.txt").await.stdout,
        "v2 \n"
    );

    // No file part; not multipart at all; into /proc.
    let body = multipart(boundary, &[("path", "/workspace/x")], None, false);
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    let j = r.json();
    assert_error(
        StatusCode::from_u16(r.status).unwrap(),
        &j,
        400,
        "MISSING_PARAMETER",
    );
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some("application/json"),
        b"{}",
    )
    .await;
    assert_error(
        StatusCode::from_u16(r.status).unwrap(),
        &r.json(),
        400,
        "INVALID_REQUEST",
    );
    let body = multipart(
        boundary,
        &[("path", "/proc/evil")],
        Some(("a", b"x")),
        false,
    );
    let r = raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    assert_error(
        StatusCode::from_u16(r.status).unwrap(),
        &r.json(),
        403,
        "PATH_NOT_ALLOWED",
    );

    sb.kill_and_check();
}

#[tokio::test]
async fn list_shapes() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    let out = sb
        .sh("mkdir -p /workspace/l/sub && printf 12345 > /workspace/l/five.txt && chmod 640 /workspace/l/five.txt \
             && ln -s sub /workspace/l/link && touch -d '2024-02-03 04:05:06 UTC' /workspace/l/five.txt")
        .await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);

    let (st, body) = sb.get("/files/list?path=%2Fworkspace%2Fl").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/workspace/l");
    assert_eq!(body["count"], 3);
    let files = body["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["five.txt", "link", "sub"]);

    let five = &files[0];
    assert_eq!(five["path"], "/workspace/l/five.txt");
    assert!(five["size"].is_u64(), "size must be an integer: {five}");
    assert_eq!(five["size"], 5);
    assert_eq!(five["is_directory"], false);
    assert_eq!(five["is_dir"], false);
    assert_eq!(five["permissions"], "-rw-r-----");
    assert_eq!(five["mode"], "0640");
    assert_eq!(five["modified_time"], "2024-02-03T04:05:06Z");
    assert_eq!(five["modified"], "2024-02-03T04:05:06Z");

    let sub = &files[2];
    assert_eq!(sub["is_directory"], true);
    assert_eq!(sub["is_dir"], true);
    assert_eq!(sub["permissions"], "drwxr-xr-x");
    let t = sub["modified_time"].as_str().unwrap();
    assert!(
        t.ends_with('Z') && chrono_like(t),
        "timezone-aware RFC 3339: {t}"
    );

    let link = &files[1];
    assert_eq!(link["is_symlink"], true);
    assert_eq!(
        link["is_directory"], true,
        "a link to a directory can be entered"
    );
    assert!(link["permissions"].as_str().unwrap().starts_with('l'));

    // Default path is /workspace.
    let (st, body) = sb.get("/files/list").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/workspace");
    assert!(body["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "l"));

    // Listing a file is a bad path; listing nothing is DIRECTORY_NOT_FOUND.
    let (st, body) = sb.get("/files/list?path=/workspace/l/five.txt").await;
    assert_error(st, &body, 400, "INVALID_PATH");
    let (st, body) = sb.get("/files/list?path=/workspace/nope").await;
    assert_error(st, &body, 404, "DIRECTORY_NOT_FOUND");
    assert_eq!(body["details"]["path"], "/workspace/nope");

    sb.kill_and_check();
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn chrono_like(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':'
}

#[tokio::test]
async fn exists_remove_mkdir() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;

    let (st, body) = sb
        .post("/files/mkdir", json!({"path": "/workspace/m/a/b/c"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["created"], true);
    assert_eq!(
        sb.sh("test -d /workspace/m/a/b/c && echo yes").await.stdout,
        "yes\n"
    );
    let (st, body) = sb
        .post("/files/mkdir", json!({"path": "/workspace/m/a"}))
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "mkdir -p of an existing directory succeeds: {body}"
    );
    assert_eq!(body["created"], false);

    sb.sh("echo hi > /workspace/m/a/f.txt").await;
    let (_, body) = sb.get("/files/exists?path=/workspace/m/a/f.txt").await;
    assert_eq!(body["exists"], true);
    assert_eq!(body["is_directory"], false);
    let (_, body) = sb.get("/files/exists?path=/workspace/m/a").await;
    assert_eq!(body["exists"], true);
    assert_eq!(body["is_directory"], true);
    let (st, body) = sb.get("/files/exists?path=/workspace/m/nothing").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["exists"], false);

    // mkdir over a file.
    let (st, body) = sb
        .post("/files/mkdir", json!({"path": "/workspace/m/a/f.txt"}))
        .await;
    assert_error(st, &body, 409, "FILE_ALREADY_EXISTS");

    // Remove a file, then a whole tree.
    let (st, body) = sb
        .request(
            Method::DELETE,
            "/files/remove?path=/workspace/m/a/f.txt",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(
        sb.sh("test -e /workspace/m/a/f.txt || echo gone")
            .await
            .stdout,
        "gone\n"
    );
    sb.sh("echo x > /workspace/m/a/b/c/deep.txt").await;
    let (st, body) = sb
        .request(Method::DELETE, "/files/remove?path=/workspace/m", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, body) = sb.get("/files/exists?path=/workspace/m").await;
    assert_eq!(body["exists"], false);

    // Removing what is not there.
    let (st, body) = sb
        .request(Method::DELETE, "/files/remove?path=/workspace/m", None)
        .await;
    assert_error(st, &body, 404, "FILE_NOT_FOUND");
    assert_eq!(body["details"]["path"], "/workspace/m");

    // A symbolic link is removed, not its target.
    sb.sh(
        "mkdir -p /workspace/t && echo keep > /workspace/t/k && ln -s /workspace/t /workspace/tl",
    )
    .await;
    let (st, _) = sb
        .request(Method::DELETE, "/files/remove?path=/workspace/tl", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        sb.sh("cat /workspace/t/k; test -e /workspace/tl || echo nolink")
            .await
            .stdout,
        "keep\nnolink\n"
    );

    sb.kill_and_check();
}

#[tokio::test]
async fn errors_have_the_spec_codes() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;

    let (st, body) = sb.get("/files/read?path=/workspace/missing.txt").await;
    assert_error(st, &body, 404, "FILE_NOT_FOUND");
    assert_eq!(body["details"]["path"], "/workspace/missing.txt");
    assert_eq!(body["path"], "/workspace/missing.txt");
    let r = download(&sb, "/workspace/missing.txt").await;
    assert_error(
        StatusCode::from_u16(r.status).unwrap(),
        &r.json(),
        404,
        "FILE_NOT_FOUND",
    );

    // Bad paths.
    for bad in [
        "/files/read?path=",
        "/files/read",
        "/files/read?path=%2Fworkspace%2Fa%00b",
        "/files/read?path=/workspace",
    ] {
        let (st, body) = sb.get(bad).await;
        assert_error(st, &body, 400, "INVALID_PATH");
    }
    let (st, body) = sb.get("/files/read?path=/dev/null").await;
    assert_error(st, &body, 400, "INVALID_PATH");
    let (st, body) = sb
        .post("/files/write", json!({"path": "", "content": "x"}))
        .await;
    assert_error(st, &body, 400, "INVALID_PATH");
    sb.sh("echo f > /workspace/afile").await;
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/afile/under", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_PATH");
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_PATH");

    // Kernel trees and the root are not changed through the API, also not through a link.
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/proc/sys/kernel/hostname", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/../sys/x", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    assert_eq!(body["details"]["path"], "/sys/x");
    let (st, body) = sb
        .post("/files/mkdir", json!({"path": "/dev/newdir"}))
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    let (st, body) = sb
        .request(Method::DELETE, "/files/remove?path=/", None)
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    let (st, body) = sb
        .request(Method::DELETE, "/files/remove?path=/proc/1", None)
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    sb.sh("ln -s /proc /workspace/p").await;
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/p/x", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 403, "PATH_NOT_ALLOWED");
    // Reading kernel files is fine.
    let (st, body) = sb.get("/files/read?path=/proc/self/status").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["content"].as_str().unwrap().contains("Name:"));
    // /dev/shm is scratch space.
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/dev/shm/scratch", "content": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // The template's read-only layers.
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/usr/hutch-test", "content": "x"}),
        )
        .await;
    assert_error(st, &body, 403, "PERMISSION_DENIED");

    // Bodies.
    let (st, body) = sb.request(Method::POST, "/files/write", None).await;
    assert_error(st, &body, 400, "INVALID_JSON");
    let r = raw(
        &sb,
        "POST",
        "/files/write",
        Some("application/json"),
        b"{\"path\": ",
    )
    .await;
    assert_error(
        StatusCode::from_u16(r.status).unwrap(),
        &r.json(),
        400,
        "INVALID_JSON",
    );
    let (st, body) = sb
        .post("/files/write", json!({"path": "/workspace/x"}))
        .await;
    assert_error(st, &body, 400, "MISSING_PARAMETER");
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/x", "content": "!!", "encoding": "base64"}),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body) = sb
        .post(
            "/files/write",
            json!({"path": "/workspace/x", "content": "a", "mode": "999"}),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_REQUEST");

    // Too large for JSON: a clear 413 (never 5xx/429, which the SDK retries); download works.
    sb.sh("truncate -s 65M /workspace/huge").await;
    let (st, body) = sb.get("/files/read?path=/workspace/huge").await;
    assert_error(st, &body, 413, "FILE_TOO_LARGE");
    assert!(body["error"].as_str().unwrap().contains("/files/download"));
    let r = download(&sb, "/workspace/huge").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 65 << 20);

    sb.kill_and_check();
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>;

/// The next JSON text frame, within `secs`.
async fn frame(ws: &mut Ws, secs: u64) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Close(_) => panic!("socket closed"),
            _ => continue,
        }
    }
}

/// Waits for a change frame with this event and path, skipping others.
async fn expect_change(ws: &mut Ws, event: &str, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let f = frame(ws, 10).await;
        assert_eq!(f["type"], "change", "{f}");
        assert!(f["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        if f["event"] == event && f["path"] == path {
            return f;
        }
        seen.push(f);
    }
    panic!("no {event} for {path}; saw {seen:?}");
}

/// inotify instances the agent holds, from the host.
fn agent_inotify_fds(sb: &Sandbox<'_>) -> usize {
    let pid1 = sb.pid1();
    let children = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
        .expect("children of PID 1");
    let agent = children
        .split_whitespace()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "hutch:[agent]")
        })
        .expect("agent process");
    std::fs::read_dir(format!("/proc/{agent}/fd"))
        .expect("agent fds")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify"))
        })
        .count()
}

#[tokio::test]
async fn watch_reports_changes() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    sb.sh("mkdir -p /workspace/w/existing").await;
    let before = agent_inotify_fds(&sb);

    let mut ws = sb.ws("/files/watch").await;
    ws.send(Message::text(
        json!({"action": "watch", "path": "/workspace/w", "ack": true}).to_string(),
    ))
    .await
    .unwrap();
    let ack = frame(&mut ws, 10).await;
    assert_eq!(ack["type"], "watching", "{ack}");
    assert_eq!(ack["path"], "/workspace/w");
    assert_eq!(agent_inotify_fds(&sb), before + 1);

    // Through the API and through code in the sandbox.
    sb.post(
        "/files/write",
        json!({"path": "/workspace/w/a.txt", "content": "one"}),
    )
    .await;
    let f = expect_change(&mut ws, "created", "/workspace/w/a.txt").await;
    assert_eq!(f["is_directory"], false);
    expect_change(&mut ws, "modified", "/workspace/w/a.txt").await;
    sb.sh("echo more >> /workspace/w/a.txt").await;
    expect_change(&mut ws, "modified", "/workspace/w/a.txt").await;

    // Subdirectories, old and new, are watched.
    sb.sh("echo x > /workspace/w/existing/e.txt").await;
    expect_change(&mut ws, "created", "/workspace/w/existing/e.txt").await;
    sb.sh("mkdir -p /workspace/w/n1/n2 && echo y > /workspace/w/n1/n2/deep.txt")
        .await;
    expect_change(&mut ws, "created", "/workspace/w/n1/n2/deep.txt").await;

    sb.sh("mv /workspace/w/a.txt /workspace/w/b.txt").await;
    expect_change(&mut ws, "renamed", "/workspace/w/a.txt").await;
    let f = expect_change(&mut ws, "created", "/workspace/w/b.txt").await;
    assert_eq!(f["old_path"], "/workspace/w/a.txt");

    sb.request(
        Method::DELETE,
        "/files/remove?path=/workspace/w/b.txt",
        None,
    )
    .await;
    expect_change(&mut ws, "deleted", "/workspace/w/b.txt").await;

    // An upload shows as its target being created, not as a staging file.
    let boundary = "b0undary";
    let body = multipart(
        boundary,
        &[("path", "/workspace/w/up.txt")],
        Some(("up.txt", b"u p\n")),
        false,
    );
    raw(
        &sb,
        "POST",
        "/files/upload",
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .await;
    let f = expect_change(&mut ws, "created", "/workspace/w/up.txt").await;
    assert!(f.get("old_path").is_none(), "{f}");

    // The socket answers pings while watching.
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Pong(p) = msg {
            assert_eq!(&p[..], b"hi");
            break;
        }
    }

    // Closing frees the inotify instance.
    ws.close(None).await.unwrap();
    drop(ws);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while agent_inotify_fds(&sb) != before {
        assert!(
            std::time::Instant::now() < deadline,
            "inotify instance not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sb.kill_and_check();
}

#[tokio::test]
async fn watch_without_ack_and_errors() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;

    // The SDK's way: no acknowledgement, only change frames. Probe until the watch is live.
    let mut ws = sb.ws("/files/watch").await;
    ws.send(Message::text(
        json!({"action": "watch", "path": "/workspace"}).to_string(),
    ))
    .await
    .unwrap();
    let mut n = 0;
    let f = loop {
        n += 1;
        sb.post(
            "/files/write",
            json!({"path": format!("/workspace/probe{n}.txt"), "content": "p"}),
        )
        .await;
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        {
            break serde_json::from_str::<Value>(t.as_str()).unwrap();
        }
        assert!(n < 20, "no change frame");
    };
    assert_eq!(f["type"], "change");
    assert!(f["path"].as_str().unwrap().starts_with("/workspace/probe"));
    drop(ws);

    // A missing path: an error frame, then the socket closes (so the SDK's loop ends).
    let mut ws = sb.ws("/files/watch").await;
    ws.send(Message::text(
        json!({"action": "watch", "path": "/workspace/nope"}).to_string(),
    ))
    .await
    .unwrap();
    let f = frame(&mut ws, 10).await;
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], "FILE_NOT_FOUND");
    assert!(f["error"].is_string());
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "socket not closed after the error");

    sb.kill_and_check();
}
