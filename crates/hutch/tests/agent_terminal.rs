//! The agent's `/terminal` WebSocket (`spec` §10.2) against real sandboxes: a PTY shell that
//! echoes, resizes, exits with a frame, and dies with everything it started when the client
//! goes away.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use common::Sandbox;

type Ws = WebSocketStream<UnixStream>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn input(ws: &mut Ws, data: &str) {
    send(ws, json!({"type": "input", "data": data})).await;
}

/// What the terminal said until `done(output so far)` held, or an exit frame arrived.
struct Seen {
    output: String,
    exit: Option<i64>,
    closed: bool,
}

async fn read_until(ws: &mut Ws, limit: Duration, done: impl Fn(&str) -> bool) -> Seen {
    let mut seen = Seen {
        output: String::new(),
        exit: None,
        closed: false,
    };
    let until = tokio::time::Instant::now() + limit;
    while !done(&seen.output) {
        let msg = match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_)) | None) => {
                seen.closed = true;
                return seen;
            }
            Err(_) => panic!("timed out; output so far: {:?}", seen.output),
        };
        match msg {
            Message::Text(t) => {
                assert!(t.len() < 1024 * 1024, "frame of {} bytes", t.len());
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("output") => seen.output.push_str(v["data"].as_str().unwrap()),
                    Some("exit") => seen.exit = v["code"].as_i64(),
                    other => panic!("unexpected frame {other:?}: {v}"),
                }
            }
            Message::Close(_) => {
                seen.closed = true;
                return seen;
            }
            _ => {}
        }
    }
    seen
}

/// Waits until no process in the sandbox satisfies `matches` on its `args`.
async fn wait_no_process(sb: &Sandbox<'_>, what: &str, matches: impl Fn(&str) -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sb.sh("ps -eo args=").await.stdout;
        let left: Vec<&str> = out.lines().map(str::trim).filter(|l| matches(l)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "{what} still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_shell(args: &str) -> bool {
    args == "bash -i"
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_echoes_resizes_and_exits() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let mut ws = sb.ws("/terminal").await;
    let t = Duration::from_secs(15);

    // The echo of the command line shows `40+2`; only the shell's output says 42.
    input(&mut ws, "echo $((40+2))\n").await;
    let seen = read_until(&mut ws, t, |o| o.contains("42\r\n")).await;
    // The PTY is the shell's controlling terminal: bash has job control and says nothing.
    assert!(!seen.output.contains("job control"), "{:?}", seen.output);
    assert!(
        !seen.output.contains("terminal process group"),
        "{:?}",
        seen.output
    );

    // A real terminal, in the working directory, with the sandbox environment.
    input(&mut ws, "tty; pwd; echo \"term=$TERM\"\n").await;
    let seen = read_until(&mut ws, t, |o| o.contains("term=xterm-256color")).await;
    assert!(seen.output.contains("/dev/pts/"), "{:?}", seen.output);
    assert!(seen.output.contains("/workspace\r\n"), "{:?}", seen.output);

    // Resizing reaches the terminal.
    send(&mut ws, json!({"type": "resize", "cols": 123, "rows": 45})).await;
    input(&mut ws, "stty size\n").await;
    read_until(&mut ws, t, |o| o.contains("45 123\r\n")).await;

    // Pings are answered while the session runs.
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let until = tokio::time::Instant::now() + t;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(&p[..], b"hi");
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no pong: {other:?}"),
        }
    }

    // Large output arrives complete, in frames well under the SDK's 1 MiB limit.
    input(&mut ws, "seq 1 200000; echo seq-$((1+1))-done\n").await;
    let seen = read_until(&mut ws, Duration::from_secs(60), |o| {
        o.contains("seq-2-done")
    })
    .await;
    assert!(seen.output.contains("\r\n199999\r\n200000\r\n"));

    // Non-ASCII text survives the byte stream.
    input(&mut ws, "echo \"h\u{e9}llo \u{20ac}\"\n").await;
    read_until(&mut ws, t, |o| o.contains("h\u{e9}llo \u{20ac}\r\n")).await;

    // `exit 7` ends the shell: an exit frame with its code, then the close.
    input(&mut ws, "exit 7\n").await;
    let seen = read_until(&mut ws, t, |_| false).await;
    assert_eq!(seen.exit, Some(7), "{:?}", seen.output);
    assert!(seen.closed);
    wait_no_process(&sb, "the shell", is_shell).await;

    sb.kill_and_check();
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_the_socket_kills_the_shell_and_its_jobs() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let t = Duration::from_secs(15);

    // Clean close: a background job (its own process group under job control) and the shell.
    let mut ws = sb.ws("/terminal").await;
    input(&mut ws, "sleep 4242 &\n").await;
    input(&mut ws, "echo ready-$((1+1))\n").await;
    read_until(&mut ws, t, |o| o.contains("ready-2")).await;
    let before = sb.sh("ps -eo args=").await.stdout;
    assert!(before.lines().any(|l| l.trim() == "sleep 4242"), "{before}");
    ws.close(None).await.unwrap();
    drop(ws);
    wait_no_process(&sb, "sleep 4242", |a| a == "sleep 4242").await;
    wait_no_process(&sb, "the shell", is_shell).await;

    // Abrupt close (connection dropped) while a foreground command runs.
    let mut ws = sb.ws("/terminal").await;
    input(&mut ws, "echo go-$((2+2)); sleep 4343\n").await;
    read_until(&mut ws, t, |o| o.contains("go-4")).await;
    drop(ws);
    wait_no_process(&sb, "sleep 4343", |a| a == "sleep 4343").await;
    wait_no_process(&sb, "the shell", is_shell).await;

    // Several terminals at once are independent.
    let mut a = sb.ws("/terminal").await;
    let mut b = sb.ws("/terminal").await;
    input(&mut a, "echo A-$((1+0))\n").await;
    input(&mut b, "echo B-$((1+1))\n").await;
    let sa = read_until(&mut a, t, |o| o.contains("A-1\r\n")).await;
    let sb_seen = read_until(&mut b, t, |o| o.contains("B-2\r\n")).await;
    assert!(!sa.output.contains("B-2"));
    assert!(!sb_seen.output.contains("A-1"));
    input(&mut a, "exit\n").await;
    let sa = read_until(&mut a, t, |_| false).await;
    assert_eq!(sa.exit, Some(0));
    drop(b);
    wait_no_process(&sb, "the shells", is_shell).await;

    sb.kill_and_check();
}
