//! The Python kernel through the agent API, in real sandboxes: notebook-style persistence, rich
//! output (a real matplotlib figure, a pandas DataFrame, the `_repr_*_` protocol), errors with
//! cell line numbers, interrupts, kill-and-restart, the memory limit, contexts, output order,
//! and the warm round trip.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::Sandbox;

/// Standard base64 with padding (what the SDK decodes); panics on anything else.
fn b64decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(text.len() % 4, 0, "base64 without padding");
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for &c in chunk {
            n <<= 6;
            if c == b'=' {
                pad += 1;
            } else {
                assert_eq!(pad, 0, "data after padding");
                n |= ALPHABET
                    .iter()
                    .position(|&a| a == c)
                    .expect("base64 alphabet") as u32;
            }
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    out
}

/// Runs Python code in the default context; asserts HTTP 200.
async fn py(sb: &Sandbox<'_>, code: &str) -> Value {
    let (status, body) = sb
        .post("/execute", json!({"code": code, "language": "python"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Runs code and asserts it succeeded.
async fn ok(sb: &Sandbox<'_>, code: &str) -> Value {
    let body = py(sb, code).await;
    assert_eq!(body["success"], true, "{code}: {body}");
    assert_eq!(body["exit_code"], 0, "{body}");
    body
}

#[tokio::test]
async fn state_persists_between_calls() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let first = ok(
        &sb,
        "import math\nx = 41\ndef inc(v):\n    return v + 1\nclass Box:\n    def __init__(self, v):\n        self.v = v\n    def __repr__(self):\n        return f'Box({self.v})'",
    )
    .await;
    assert_eq!(first["stdout"], "");
    assert!(first["result"].is_null(), "{first}");

    let second = ok(&sb, "print(inc(x))\nprint(round(math.pi, 2))\nBox(inc(x))").await;
    assert_eq!(second["stdout"], "42\n3.14\n");
    assert_eq!(second["result"], "Box(42)");
    assert_eq!(
        second["execution_time"].as_f64().map(|t| t >= 0.0),
        Some(true)
    );

    // The value of the final expression is the result, not stdout; a trailing `;` hides it.
    let third = ok(&sb, "y = x * 2\ny").await;
    assert_eq!(third["result"], "82");
    assert_eq!(third["stdout"], "");
    let quiet = ok(&sb, "y;").await;
    assert!(quiet["result"].is_null(), "{quiet}");

    // `_` is the last result, like IPython; cells are independent compilations.
    assert_eq!(ok(&sb, "_ + 1").await["result"], "83");

    // Top-level await works like IPython's autoawait.
    let awaited = ok(&sb, "import asyncio\nawait asyncio.sleep(0.01)\n'done'").await;
    assert_eq!(awaited["result"], "'done'");

    // The SDK's own example: sys.exit inside a cell ends the cell, not the kernel.
    let exited = py(&sb, "import sys\nsys.exit(3)").await;
    assert_eq!(exited["success"], false);
    assert_eq!(exited["exit_code"], 3);
    assert_eq!(ok(&sb, "x").await["result"], "41");
    sb.kill_and_check();
}

#[tokio::test]
async fn rich_outputs() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    // A figure left open at the end of the cell comes back as PNG (inline-backend behaviour),
    // and `plt.show()` shows (and closes) the figures open at that point.
    let fig = ok(
        &sb,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nplt.show()\nprint('between')\nplt.figure()\nplt.bar(['a', 'b'], [1, 2])\nplt.savefig('/tmp/plot.png')",
    )
    .await;
    assert_eq!(fig["stdout"], "between\n");
    let outputs = fig["outputs"].as_array().expect("outputs");
    let pngs: Vec<&Value> = outputs
        .iter()
        .filter_map(|o| o["data"].get("image/png"))
        .collect();
    assert_eq!(pngs.len(), 2, "{outputs:?}");
    let png = b64decode(fig["png"].as_str().expect("png key"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(fig["png"], *pngs[1], "the top-level png is the last figure");
    // Figures were closed after being shown.
    assert_eq!(ok(&sb, "len(plt.get_fignums())").await["result"], "0");

    // A DataFrame as the result: HTML and the `dataframe` JSON.
    let df = ok(
        &sb,
        "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', None]})\ndf",
    )
    .await;
    assert!(df["html"].as_str().unwrap_or("").contains("<table"), "{df}");
    let frame = &df["dataframe"];
    assert_eq!(frame["columns"], json!(["a", "b"]));
    assert_eq!(frame["data"], json!([[1, "x"], [2, "y"], [3, null]]));
    assert_eq!(frame["index"], json!([0, 1, 2]));
    assert_eq!(frame["shape"], json!([3, 2]));
    assert!(df["result"].as_str().unwrap_or("").contains("a"), "{df}");

    // The display protocol and display().
    let shown = ok(
        &sb,
        "class Rich:\n    def _repr_html_(self): return '<b>rich</b>'\n    def _repr_markdown_(self): return '**rich**'\n    def _repr_svg_(self): return '<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'\n    def _repr_json_(self): return {'k': [1, 2]}\n    def _repr_latex_(self): return r'$x^2$'\ndisplay(Rich())\nprint('after display')\n42",
    )
    .await;
    assert_eq!(shown["html"], "<b>rich</b>");
    assert_eq!(shown["markdown"], "**rich**");
    assert_eq!(shown["json"], json!({"k": [1, 2]}));
    assert_eq!(shown["latex"], "$x^2$");
    assert!(shown["svg"].as_str().unwrap_or("").starts_with("<svg"));
    assert_eq!(shown["result"], "42");
    assert_eq!(shown["stdout"], "after display\n");
    let kinds: Vec<&str> = shown["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["display", "result"]);

    // IPython.display works without IPython installed.
    let ipy = ok(
        &sb,
        "from IPython.display import HTML, Markdown, display\ndisplay(Markdown('# hi'))\nHTML('<i>x</i>')",
    )
    .await;
    assert_eq!(ipy["html"], "<i>x</i>");
    assert_eq!(ipy["markdown"], "# hi");
    sb.kill_and_check();
}

#[tokio::test]
async fn errors_point_into_the_cell() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let body = py(
        &sb,
        "def f(a):\n    return a / 0\n\nprint('before')\nf(1)\n",
    )
    .await;
    assert_eq!(body["success"], false);
    assert_eq!(body["exit_code"], 1);
    assert_eq!(body["stdout"], "before\n");
    let stderr = body["stderr"].as_str().unwrap();
    assert!(
        stderr.starts_with("Traceback (most recent call last):"),
        "{stderr}"
    );
    assert!(stderr.contains(", line 5, in <module>"), "{stderr}");
    assert!(stderr.contains(", line 2, in f"), "{stderr}");
    assert!(stderr.contains("    return a / 0"), "{stderr}");
    assert!(
        stderr.contains("ZeroDivisionError: division by zero"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("python_kernel"),
        "kernel frames leak: {stderr}"
    );
    assert_eq!(body["exception"]["name"], "ZeroDivisionError");
    assert_eq!(body["exception"]["value"], "division by zero");
    assert_eq!(body["error"], "ZeroDivisionError: division by zero");

    // A function defined in an earlier cell shows that cell's source.
    let later = py(&sb, "f(2)").await;
    let stderr = later["stderr"].as_str().unwrap();
    assert!(stderr.contains("    return a / 0"), "{stderr}");

    let syntax = py(&sb, "x = 1\ny = (\n").await;
    assert_eq!(syntax["success"], false);
    assert_eq!(syntax["exception"]["name"], "SyntaxError");
    assert!(
        syntax["stderr"].as_str().unwrap().contains("line 2"),
        "{syntax}"
    );

    let input = py(&sb, "name = input('name? ')").await;
    assert_eq!(input["success"], false);
    assert_eq!(input["exception"]["name"], "StdinNotImplementedError");
    assert!(
        input["stderr"]
            .as_str()
            .unwrap()
            .contains("input() is not supported"),
        "{input}"
    );
    assert!(
        !input["stderr"].as_str().unwrap().contains("python_kernel"),
        "{input}"
    );

    // Bad requests are 400 INVALID_REQUEST, never 5xx.
    let (status, bad) = sb.post("/execute", json!({"language": "python"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["code"], "INVALID_REQUEST");
    assert!(bad["error"].is_string());
    let (status, bad) = sb
        .post("/execute", json!({"code": "1", "language": "cobol"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["code"], "INVALID_REQUEST");
    sb.kill_and_check();
}

#[tokio::test]
async fn timeout_interrupts_and_the_kernel_survives() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    ok(&sb, "kept = 'still here'").await;

    let start = Instant::now();
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "print('looping', flush=True)\nwhile True:\n    pass", "language": "python", "timeout": 1}),
        )
        .await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "EXECUTION_TIMEOUT");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["kernel_restarted"], false);
    assert_eq!(body["success"], false);
    assert_eq!(body["stdout"], "looping\n");
    assert!(
        body["stderr"]
            .as_str()
            .unwrap()
            .contains("KeyboardInterrupt"),
        "{body}"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");

    // Same kernel, same state.
    assert_eq!(ok(&sb, "kept").await["result"], "'still here'");
    sb.kill_and_check();
}

#[tokio::test]
async fn a_cell_that_ignores_interrupts_gets_its_kernel_restarted() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    ok(&sb, "lost = 1").await;
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)", "language": "python", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "EXECUTION_TIMEOUT");
    assert_eq!(body["kernel_restarted"], true, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("restarted"),
        "{body}"
    );

    // A fresh kernel: the old state is gone, the new one works.
    let after = py(&sb, "lost").await;
    assert_eq!(after["exception"]["name"], "NameError", "{after}");
    assert_eq!(ok(&sb, "1 + 1").await["result"], "2");
    sb.kill_and_check();
}

#[tokio::test]
async fn the_memory_limit_kills_the_kernel_not_the_sandbox() {
    let env = common::TestEnv::new();
    let sb = env.sandbox_with(|s| s.resources.memory_mb = 200).await;
    ok(&sb, "before = 1").await;
    let body = py(
        &sb,
        "chunks = []\nwhile True:\n    chunks.append(bytearray(b'x' * (16 << 20)))",
    )
    .await;
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["kernel_restarted"], true, "{body}");
    assert_eq!(body["exit_code"], 137, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("memory limit"), "{error}");
    assert!(
        body["stderr"].as_str().unwrap().contains("memory limit"),
        "{body}"
    );

    // The sandbox and the interpreter keep working.
    assert_eq!(ok(&sb, "2 + 2").await["result"], "4");
    assert_eq!(py(&sb, "before").await["exception"]["name"], "NameError");
    assert_eq!(sb.sh("echo alive").await.stdout, "alive\n");
    sb.kill_and_check();
}

#[tokio::test]
async fn contexts_are_isolated() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let (status, a) = sb.post("/contexts", json!({"language": "python"})).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (_, b) = sb
        .post(
            "/contexts",
            json!({"language": "python", "cwd": "/tmp/ctx-b"}),
        )
        .await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    assert_ne!(a, b);

    let run = |ctx: String, code: &'static str| {
        let sb = &sb;
        async move {
            let (status, body) = sb
                .post(
                    "/execute",
                    json!({"code": code, "language": "python", "context_id": ctx}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    run(a.clone(), "x = 'A'").await;
    run(b.clone(), "x = 'B'").await;
    assert_eq!(run(a.clone(), "x").await["result"], "'A'");
    assert_eq!(run(b.clone(), "x").await["result"], "'B'");
    assert_eq!(py(&sb, "x").await["exception"]["name"], "NameError");
    // A context made with a cwd starts there (the request names no workdir).
    let (_, cwd) = sb
        .post(
            "/execute",
            json!({"code": "import os\nos.getcwd()", "language": "python", "context_id": b}),
        )
        .await;
    assert_eq!(cwd["result"], "'/tmp/ctx-b'");

    // Two contexts run in parallel.
    let start = Instant::now();
    let (ra, rb) = tokio::join!(
        run(a.clone(), "import time\ntime.sleep(1)\n'a'"),
        run(b.clone(), "import time\ntime.sleep(1)\n'b'")
    );
    assert_eq!(
        (ra["result"].as_str(), rb["result"].as_str()),
        (Some("'a'"), Some("'b'"))
    );
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );

    let (_, list) = sb.get("/contexts").await;
    let ids: Vec<&str> = list["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "{list}"
    );
    assert!(ids.contains(&"default-python"), "{list}");

    // Restart loses the state; delete forgets the context.
    let (status, restarted) = sb.post(&format!("/contexts/{a}/restart"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{restarted}");
    assert_eq!(run(a.clone(), "x").await["exception"]["name"], "NameError");
    let (status, _) = sb
        .request(Method::DELETE, &format!("/contexts/{b}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, gone) = sb
        .post(
            "/execute",
            json!({"code": "x", "language": "python", "context_id": b}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    assert_eq!(gone["code"], "CONTEXT_NOT_FOUND");
    // A context of another language is refused.
    let (status, wrong) = sb
        .post(
            "/execute",
            json!({"code": "1", "language": "javascript", "context_id": a}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
    sb.kill_and_check();
}

#[tokio::test]
async fn env_and_working_directory() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let (_, body) = sb
        .post(
            "/execute",
            json!({"code": "import os\nprint(os.environ['GREETING'], os.getcwd())", "language": "python",
                   "env": {"GREETING": "hello"}, "workdir": "/tmp/work"}),
        )
        .await;
    assert_eq!(body["stdout"], "hello /tmp/work\n", "{body}");
    // Per-request variables are for that run only; the working directory follows requests.
    let (_, body) = sb
        .post(
            "/execute",
            json!({"code": "import os\nprint(os.environ.get('GREETING'), os.getcwd())", "language": "python",
                   "working_dir": "/workspace"}),
        )
        .await;
    assert_eq!(body["stdout"], "None /workspace\n", "{body}");
    // A chdir inside the code lasts while requests keep the same workdir.
    ok(&sb, "os.chdir('/tmp')").await;
    assert_eq!(ok(&sb, "os.getcwd()").await["result"], "'/tmp'");
    sb.kill_and_check();
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order_when_streamed() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;
    let code = "import sys, os, time\nprint('one')\nprint('two', file=sys.stderr)\nos.system('echo three; echo four >&2')\nprint('five', flush=True)\ntime.sleep(0.3)\nprint('six')\n1/0";
    let mut ws = sb.ws("/execute/stream").await;
    ws.send(Message::Text(
        json!({"type": "execute", "code": code, "language": "python", "timeout": 30})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut frames: Vec<Value> = Vec::new();
    let mut arrival: Vec<Instant> = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let done = v["type"] == "complete";
            frames.push(v);
            arrival.push(Instant::now());
            if done {
                break;
            }
        }
    }
    // One line may arrive in several frames (`print` writes the text and the newline
    // separately, and the kernel may flush between them), and one frame may hold several lines:
    // label each line with its stream.
    let mut text = String::new();
    let mut last = "";
    for f in &frames {
        let label = match f["type"].as_str().unwrap() {
            "stdout" => "out:",
            "stderr" => "err:",
            _ => continue,
        };
        for piece in f["data"].as_str().unwrap().split_inclusive('\n') {
            if label != last || text.is_empty() || text.ends_with('\n') {
                text.push_str(label);
            }
            text.push_str(piece);
            last = label;
        }
    }
    let order: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("err:Traceback") && !l.starts_with("  "))
        .collect();
    // Python-level writes keep their exact order. `three` and `four` come from a subprocess
    // writing to two different pipes: each arrives between `two` and `five`, but no reader can
    // tell which of two pipes was written first once both hold data.
    assert!(text.starts_with("out:one\nerr:two\n"), "{text}");
    let middle: Vec<&str> = text.lines().skip(2).take(2).collect();
    assert!(
        middle.contains(&"out:three") && middle.contains(&"err:four"),
        "{text}"
    );
    assert_eq!(text.lines().nth(4), Some("out:five"), "{text}");
    assert!(order.iter().any(|l| l.contains("six")), "{order:?}");
    assert!(text.contains("ZeroDivisionError"), "{text}");
    // 'five' was streamed before the sleep ended, not at the end.
    let five = frames
        .iter()
        .position(|f| f["data"].as_str().is_some_and(|d| d.contains("five")))
        .unwrap();
    let six = frames
        .iter()
        .position(|f| f["data"].as_str().is_some_and(|d| d.contains("six")))
        .unwrap();
    assert!(
        arrival[six] - arrival[five] >= Duration::from_millis(200),
        "five was not streamed early"
    );
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    let tail = &types[types.len() - 3..];
    assert_eq!(tail, ["result", "error", "complete"], "{types:?}");
    let error = &frames[frames.len() - 2];
    assert_eq!(error["code"], "EXECUTION_FAILED");
    assert_eq!(error["name"], "ZeroDivisionError");
    assert_eq!(frames.last().unwrap()["success"], false);
    sb.kill_and_check();
}

/// Prints the warm round trip of `1+1` through the agent socket (p50 over 200 calls) and the
/// time from sandbox creation to the first Python output. Measures; asserts only correctness.
#[tokio::test]
async fn warm_round_trip() {
    let env = common::TestEnv::new();
    let created = Instant::now();
    let sb = env.sandbox().await;
    let ready = created.elapsed();
    let first = ok(&sb, "print('hi')").await;
    let first_output = created.elapsed();
    assert_eq!(first["stdout"], "hi\n");

    let body = json!({"code": "1+1", "language": "python"}).to_string();
    let mut samples = Vec::with_capacity(200);
    for _ in 0..220 {
        let start = Instant::now();
        let (status, bytes) = sb
            .agent
            .request(
                Method::POST,
                "/execute",
                Some(bytes::Bytes::from(body.clone())),
                Duration::from_secs(10),
            )
            .await
            .expect("agent request");
        samples.push(start.elapsed());
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["result"], "2");
    }
    let (_, ctx) = sb.get("/contexts/default-python").await;
    let mut warm: Vec<Duration> = samples[20..].to_vec();
    warm.sort();
    let pct = |p: f64| warm[((warm.len() as f64 - 1.0) * p) as usize];
    println!(
        "kernels: sandbox ready {:.1} ms, first python output {:.1} ms after create; \
         kernel start-up {} ms; warm 1+1 round trip p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        ready.as_secs_f64() * 1e3,
        first_output.as_secs_f64() * 1e3,
        ctx["startup_ms"],
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    sb.kill_and_check();
}
