//! Sessions and artifacts at the agent, in real sandboxes: a session's state is saved after
//! every successful cell and restored into a fresh kernel (variables by pickle, imports,
//! functions and classes by replaying their definitions), with what was dropped and why; files
//! and figures an execution produces are recorded, fetched and removed.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use common::Sandbox;

async fn session_exec(sb: &Sandbox<'_>, sid: &str, code: &str) -> Value {
    let (status, body) = sb
        .post("/execute", json!({"code": code, "session_id": sid}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn names(v: &Value) -> Vec<&str> {
    let mut n: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    n.sort_unstable();
    n
}

#[tokio::test]
async fn session_state_survives_a_kernel_restart() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let first = session_exec(
        &sb,
        "s1",
        "import math\nimport threading\nx = 41\ndata = {'k': [1, 2]}\n\
         def inc(v):\n    return v + 1\n\
         class Box:\n    def __init__(self, v):\n        self.v = v\n\
         b = Box(7)\nlock = threading.Lock()\nsq = lambda v: v * v\nprint('hi')",
    )
    .await;
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["stdout"], "hi\n");
    assert_eq!(first["session_id"], "s1");
    assert!(first["restored"].is_null(), "{first}");
    let persisted = &first["persisted"];
    assert_eq!(
        names(&persisted["saved"]),
        ["Box", "b", "data", "inc", "math", "threading", "x"],
        "{persisted}"
    );
    let dropped: Vec<&str> = persisted["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(dropped, ["lock", "sq"], "{persisted}");
    assert!(
        persisted["dropped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not picklable"),
        "{persisted}"
    );

    // A failing cell does not overwrite the saved state.
    let failed = session_exec(&sb, "s1", "x = 1000\n1/0").await;
    assert_eq!(failed["success"], false);
    assert!(failed["persisted"].is_null(), "{failed}");

    // The session's context is its own: the default context does not see its names.
    let (_, default) = sb
        .post("/execute", json!({"code": "'x' in globals()"}))
        .await;
    assert_eq!(default["result"], "False");

    // Kill the session's kernel: the next cell restores the last saved state.
    let (status, contexts) = sb.get("/contexts").await;
    assert_eq!(status, StatusCode::OK);
    let ctx = contexts["contexts"]
        .as_array()
        .or_else(|| contexts.as_array())
        .unwrap()
        .iter()
        .find(|c| c["id"] == "session-s1")
        .cloned()
        .unwrap_or_else(|| panic!("no session context in {contexts}"));
    let (status, _) = sb
        .request(Method::POST, "/contexts/session-s1/restart", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ctx}");
    let after = session_exec(
        &sb,
        "s1",
        "print(inc(x), math.floor(2.5), data['k'], b.v, type(b).__name__)",
    )
    .await;
    assert_eq!(after["success"], true, "{after}");
    // The failing cell set x = 1000 before raising, but only successful cells are saved.
    assert_eq!(after["stdout"], "42 2 [1, 2] 7 Box\n", "{after}");
    let restored = &after["restored"];
    assert_eq!(
        names(&restored["restored"]),
        ["Box", "b", "data", "inc", "math", "threading", "x"]
    );
    let dropped: Vec<&str> = restored["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(dropped, ["lock", "sq"], "{restored}");

    // The state file can be read and replaced through the internal routes; deleting the
    // session removes its context and state.
    let (status, _) = sb
        .request(Method::GET, "/_hutch/sessions/s1/state", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = sb.get("/_hutch/sessions/no-such/state").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "SESSION_NOT_FOUND");
    let (status, body) = sb
        .post("/execute", json!({"code": "1", "session_id": "../etc"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": "1", "session_id": "s1", "language": "bash"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = sb
        .request(Method::DELETE, "/_hutch/sessions/s1", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = sb.get("/_hutch/sessions/s1/state").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let fresh = session_exec(&sb, "s1", "'x' in globals()").await;
    assert_eq!(fresh["result"], "False");
    sb.kill_and_check();
}

#[tokio::test]
async fn artifacts_are_recorded_fetched_and_removed() {
    let env = common::TestEnv::new();
    let sb = env.sandbox().await;

    let code = "import matplotlib.pyplot as plt\n\
                plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n\
                fig = plt.figure(); plt.plot([3, 2, 1])\n\
                open('/workspace/out.csv', 'w').write('a,b\\n1,2\\n')\nprint('done')";
    let (status, body) = sb
        .post(
            "/execute",
            json!({"code": code, "capture_artifacts": true, "timeout": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["stdout"], "done\n", "stdout is never dropped");
    let arts = body["artifacts"].as_array().unwrap();
    let mut cats: Vec<(&str, &str)> = arts
        .iter()
        .map(|a| (a["category"].as_str().unwrap(), a["type"].as_str().unwrap()))
        .collect();
    cats.sort_unstable();
    // The shown figure and the one left open are both plots; the CSV is data.
    assert_eq!(
        cats,
        [
            ("data", "text/csv"),
            ("plots", "image/png"),
            ("plots", "image/png")
        ],
        "{body}"
    );
    for a in arts {
        assert_eq!(a["execution_id"], body["execution_id"]);
        assert!(a["path"].as_str().unwrap().starts_with("/workspace/"));
        assert!(a["size"].as_u64().unwrap() > 0);
        assert!(a["id"].as_str().unwrap().starts_with("art_"));
    }

    // An execution without capture lists nothing new.
    let (_, plain) = sb
        .post(
            "/execute",
            json!({"code": "open('/workspace/x.txt','w').write('x')"}),
        )
        .await;
    assert!(plain.get("artifacts").is_none(), "{plain}");

    let (status, list) = sb
        .get(&format!(
            "/artifacts?execution_id={}",
            body["execution_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["count"], 3, "{list}");

    // Fetch a figure: real PNG bytes with its type.
    let png = arts.iter().find(|a| a["type"] == "image/png").unwrap();
    let (status, bytes) = sb
        .agent
        .request(
            Method::GET,
            &format!("/artifacts/{}", png["id"].as_str().unwrap()),
            None,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(bytes.len() as u64, png["size"].as_u64().unwrap());

    let (status, body) = sb
        .request(Method::DELETE, "/artifacts/art_nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "FILE_NOT_FOUND");
    let (status, removed) = sb.request(Method::DELETE, "/artifacts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(removed["removed"], 3);
    let gone = sb
        .sh("ls /workspace/artifacts/plots | wc -l; test -e /workspace/out.csv || echo gone")
        .await;
    assert_eq!(gone.stdout, "0\ngone\n");
    let (_, list) = sb.get("/artifacts").await;
    assert_eq!(list["count"], 0);
    sb.kill_and_check();
}
