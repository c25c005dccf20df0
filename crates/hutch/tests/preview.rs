//! Preview URLs over real HTTP: a service bound to a sandbox's own 127.0.0.1 is reached from
//! the host as `{port}-{id}.localhost:<server port>`, without an API key; bodies stream both
//! ways, upgrades pass through, and the errors (unknown sandbox, nothing listening, paused)
//! are the documented ones.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::TestServer;
use hutch_client::control::full_body;
use hutch_client::ControlClient;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that streams five lines 150 ms apart on `/tick`, echoes POSTed bodies on `/echo`,
/// and on `/raw` answers an upgrade with 101 and then echoes bytes (like a WebSocket would
/// carry frames), all bound to 127.0.0.1 only.
const APP: &str = r#"
import http.server, socketserver, sys, time

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/tick":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                line = f"tick {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.15)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/raw":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(data.upper())
            self.close_connection = True
        else:
            body = ("host=%s fwd=%s auth=%s" % (self.headers.get("Host"),
                    self.headers.get("X-Forwarded-Host"),
                    self.headers.get("Authorization"))).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn preview_host(s: &TestServer, port: u16, id: &str) -> String {
    format!("{port}-{id}.localhost:{}", s.port)
}

/// A client with no API key at all: preview URLs need none.
fn anon(s: &TestServer) -> ControlClient {
    ControlClient::new(&s.url, None)
        .unwrap()
        .with_timeout(Duration::from_secs(30))
}

async fn get(s: &TestServer, host: &str, path: &str) -> hutch_client::Response {
    anon(s)
        .send(Method::GET, path, None, &[("host", host)])
        .await
        .unwrap()
}

/// Waits until something answers on the preview host (not hutch's 502).
async fn wait_listening(s: &TestServer, host: &str, path: &str) -> hutch_client::Response {
    let start = Instant::now();
    loop {
        let r = get(s, host, path).await;
        if r.status != StatusCode::BAD_GATEWAY {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "service never came up: {}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_error(r: &hutch_client::Response, status: StatusCode, code: &str) {
    let v: Value = r.json();
    assert_eq!(r.status, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["request_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("req_")));
}

async fn background(s: &TestServer, token: &str, command: &str, args: &[&str]) {
    let (status, v) = s
        .agent(
            token,
            Method::POST,
            "/commands/background",
            Some(json!({"command": command, "args": args})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_server_on_sandbox_loopback_is_reachable() {
    let s = TestServer::start().await;
    // No internet: the sandbox has only `lo`, so this can only work from inside its netns.
    let (id, token, created) = s
        .create(json!({"template_name": "code-interpreter", "internet_access": false}))
        .await;
    assert_eq!(
        created["preview_url"],
        format!("http://{{port}}-{id}.localhost:{}/", s.port)
    );
    let (_, listed) = s
        .client
        .json(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(listed["preview_url"], created["preview_url"]);

    s.run(
        &token,
        "mkdir -p /workspace/site && echo 'hello from inside' > /workspace/site/hello.txt",
    )
    .await;
    background(
        &s,
        &token,
        "python3",
        &[
            "-m",
            "http.server",
            "8000",
            "--bind",
            "127.0.0.1",
            "--directory",
            "/workspace/site",
        ],
    )
    .await;
    let host = preview_host(&s, 8000, &id);
    let r = wait_listening(&s, &host, "/hello.txt").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"hello from inside\n");

    // The preview host wins over every server route: /v1/... belongs to the app.
    let r = get(&s, &host, "/v1/sandboxes").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&r.body).contains("File not found"));
    // Host names are case-insensitive; any port (or none) after `.localhost` works.
    let r = get(&s, &format!("8000-{id}.LOCALHOST"), "/hello.txt").await;
    assert_eq!(r.status, StatusCode::OK);

    // Nothing on another port: 502 with a message that says so.
    let r = get(&s, &preview_host(&s, 8001, &id), "/").await;
    assert_error(&r, StatusCode::BAD_GATEWAY, "PORT_NOT_LISTENING");
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("port 8001"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["port"], 8001);

    // Unknown and impossible sandboxes: 404 in the control-plane shape.
    let r = get(&s, &preview_host(&s, 8000, "nosuchsandbox"), "/").await;
    assert_error(&r, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let r = get(&s, &format!("8000-no_such.localhost:{}", s.port), "/").await;
    assert_error(&r, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");

    // Paused: 409 at once, not a hang and not an implicit resume; served again once resumed.
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/pause"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    let started = Instant::now();
    let r = get(&s, &host, "/hello.txt").await;
    assert_error(&r, StatusCode::CONFLICT, "SANDBOX_PAUSED");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, v) = s
        .client
        .json(Method::POST, &format!("/v1/sandboxes/{id}/resume"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    let r = get(&s, &host, "/hello.txt").await;
    assert_eq!(r.status, StatusCode::OK);

    // Deleted: gone from the preview route too.
    let (status, _) = s
        .client
        .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let r = get(&s, &host, "/hello.txt").await;
    assert_error(&r, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream_and_upgrades_pass_through() {
    let s = TestServer::start().await;
    let (id, token, _) = s.create(json!({"template_name": "code-interpreter"})).await;
    let (status, v) = s
        .agent(
            &token,
            Method::POST,
            "/files/write",
            Some(json!({"path": "/workspace/app.py", "content": APP})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    background(&s, &token, "python3", &["/workspace/app.py", "9000"]).await;
    let host = preview_host(&s, 9000, &id);

    // Headers: Host as the client sent it, X-Forwarded-Host added, Authorization passed on
    // (the request is the user's own; hutch asks for no credentials here).
    wait_listening(&s, &host, "/").await;
    let r = anon(&s)
        .send(
            Method::GET,
            "/",
            None,
            &[("host", &host), ("authorization", "Bearer app-token")],
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("host={host} fwd={host} auth=Bearer app-token")
    );

    // A 3 MB request body arrives whole and comes back whole.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let r = anon(&s)
        .send(
            Method::POST,
            "/echo",
            Some(Bytes::from(big.clone())),
            &[("host", &host)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body == big,
        "echoed body differs ({} bytes)",
        r.body.len()
    );

    // The response streams: the first line arrives long before the last.
    let resp = anon(&s)
        .open(
            Method::GET,
            "/tick",
            full_body(Bytes::new()),
            &[("host", &host)],
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
            arrivals.push(start.elapsed());
        }
    }
    assert_eq!(text.lines().count(), 5, "{text}");
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(400),
        "not streamed: {arrivals:?}"
    );

    // An upgrade: 101 through the proxy, then raw bytes both ways.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    conn.write_all(
        format!(
            "GET /raw HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).await.unwrap(),
            1,
            "closed during the 101"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"PING THROUGH THE TUNNEL");
    drop(conn);

    let (status, _) = s
        .client
        .json(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}
