//! The `hutch` CLI's sandbox verbs against a real server: create, ls, info, pause, resume,
//! stop, start, timeout, kill — as JSON for scripts and as human output — plus configuration,
//! errors, completions and templates.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;
mod common;

use cli_support::Cli;
use common::server::{TestServer, API_KEY};
use serde_json::Value;

fn status(cli: &Cli, id: &str) -> String {
    cli.json(&["info", id])["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn lifecycle_round_trip() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);

    let created = cli.json(&[
        "create",
        "--template",
        "code-interpreter",
        "--timeout",
        "600",
        "--env",
        "GREETING=hello there",
    ]);
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["auth_token"].is_string(), "{created}");
    assert_eq!(created["timeout_seconds"], 600);

    // The environment reached the sandbox.
    let out = cli.run(&["exec", &id, "--", "printenv", "GREETING"]).ok();
    assert_eq!(out.stdout, "hello there\n");

    let list = cli.json(&["ls"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(cli.ids(), vec![id.clone()]);
    assert_eq!(
        cli.json(&["ls", "--status", "paused"]),
        Value::Array(vec![])
    );

    // Human output: a table with a header, no colour codes into a pipe.
    let human = cli.run(&["ls"]).ok().stdout;
    let mut lines = human.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "STATUS", "TEMPLATE", "CREATED", "EXPIRES"] {
        assert!(header.contains(col), "{human}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id) && row.contains("running"), "{human}");
    assert!(
        row.contains("code-interpreter") && row.contains("in "),
        "{human}"
    );
    assert!(
        !human.contains('\u{1b}'),
        "colour codes in a pipe: {human:?}"
    );
    let info = cli.run(&["info", &id]).ok().stdout;
    assert!(info.contains("id:") && info.contains(&id), "{info}");
    assert!(
        info.contains("status:") && info.contains("running"),
        "{info}"
    );

    let paused = cli.json(&["pause", &id]);
    assert_eq!(paused["status"], "paused");
    assert_eq!(status(&cli, &id), "paused");
    // A paused sandbox refuses agent calls with the gateway's message.
    let refused = cli.run(&["exec", &id, "--", "true"]).expect_code(1);
    assert!(refused.stderr.contains("paused"), "{}", refused.stderr);
    assert_eq!(
        cli.run(&["resume", &id]).ok().stdout,
        format!("{id} resumed\n")
    );
    assert_eq!(status(&cli, &id), "running");
    assert_eq!(
        cli.run(&["stop", &id]).ok().stdout,
        format!("{id} stopped\n")
    );
    assert_eq!(status(&cli, &id), "stopped");
    assert_eq!(cli.json(&["start", &id])["status"], "running");
    cli.run(&["exec", &id, "--", "true"]).ok();

    let before = cli.json(&["info", &id])["expires_at"].clone();
    let t = cli.json(&["timeout", &id, "7200"]);
    assert_eq!(t["timeout_seconds"], 7200);
    assert_ne!(t["expires_at"], before);
    let human = cli.run(&["timeout", &id, "3600"]).ok().stdout;
    assert!(human.contains("expires in 1 hour"), "{human}");

    assert_eq!(
        cli.run(&["kill", &id]).ok().stdout,
        format!("{id} deleted\n")
    );
    assert!(cli.ids().is_empty());
    let gone = cli.run(&["info", &id]).expect_code(1);
    assert!(gone.stderr.starts_with("hutch: "), "{}", gone.stderr);
    assert!(
        gone.stderr.contains("RESOURCE_NOT_FOUND"),
        "{}",
        gone.stderr
    );

    // Several ids: each is handled, a failure does not stop the others.
    let a = cli.create();
    let b = cli.create();
    let out = cli.run(&["kill", &a, "no-such-sandbox", &b]).expect_code(1);
    assert!(
        out.stdout.contains(&format!("{a} deleted")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{b} deleted")),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("no-such-sandbox"), "{}", out.stderr);
    assert!(cli.ids().is_empty());
}

#[tokio::test]
async fn errors_carry_the_server_message() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);

    let out = cli.run(&["info", "sb-does-not-exist"]).expect_code(1);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.starts_with("hutch: "), "{}", out.stderr);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    assert!(
        out.stderr.contains("(RESOURCE_NOT_FOUND)"),
        "{}",
        out.stderr
    );

    let out = cli.run(&["kill", "sb-does-not-exist"]).expect_code(1);
    assert!(out.stderr.contains("RESOURCE_NOT_FOUND"), "{}", out.stderr);

    let out = cli
        .run(&["create", "--template", "no-such-template"])
        .expect_code(1);
    assert!(out.stderr.contains("TEMPLATE_NOT_FOUND"), "{}", out.stderr);

    let out = cli.run(&["ls", "--api-key", "wrong"]).expect_code(1);
    assert!(
        out.stderr.contains("invalid API key (UNAUTHORIZED)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);

    let no_key = cli.bare(&["ls", "--url", &srv.url]).output().unwrap();
    assert_eq!(no_key.status.code(), Some(1));
    let err = String::from_utf8_lossy(&no_key.stderr);
    assert!(
        err.contains("UNAUTHORIZED") && err.contains("--api-key"),
        "{err}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = cli
        .bare(&[
            "ls",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--api-key",
            "k",
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("hutch serve"),
        "{err}"
    );

    let out = cli.run(&["timeout", "x", "0"]).expect_code(1);
    assert!(out.stderr.contains("positive"), "{}", out.stderr);
    // Usage errors are clap's (exit 2).
    cli.run(&["create", "--env", "=x"]).expect_code(2);
}

#[tokio::test]
async fn flags_beat_environment_beats_config_file() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let dir = cli.config_home.path().join("hutch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("url = \"{}\"\napi_key = \"{API_KEY}\"\n", srv.url),
    )
    .unwrap();

    // The file alone is enough.
    let out = cli.bare(&["ls", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The environment beats the file.
    let out = cli
        .bare(&["ls"])
        .env("HUTCH_API_KEY", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A flag beats the environment.
    let out = cli
        .bare(&["ls", "--api-key", API_KEY])
        .env("HUTCH_API_KEY", "wrong")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli
        .bare(&["ls", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // A typo in the file is reported with the file's name.
    std::fs::write(dir.join("config.toml"), "apikey = \"x\"\n").unwrap();
    let out = cli.bare(&["ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("apikey"),
        "{err}"
    );
}

#[tokio::test]
async fn templates() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);

    let list = cli.json(&["template", "ls"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"code-interpreter"), "{names:?}");
    let human = cli.run(&["template", "ls"]).ok().stdout;
    assert!(human.starts_with("NAME"), "{human}");
    assert!(human.contains("code-interpreter"), "{human}");

    let info = cli.json(&["template", "info", "code-interpreter"]);
    assert_eq!(info["name"], "code-interpreter");
    let human = cli
        .run(&["template", "info", "code-interpreter"])
        .ok()
        .stdout;
    assert!(
        human.contains("name:") && human.contains("code-interpreter"),
        "{human}"
    );
    let out = cli.run(&["template", "info", "nope"]).expect_code(1);
    assert!(out.stderr.contains("TEMPLATE_NOT_FOUND"), "{}", out.stderr);
    let out = cli
        .run(&["template", "rm", "code-interpreter"])
        .expect_code(1);
    assert!(out.stderr.contains("FORBIDDEN"), "{}", out.stderr);

    // A build: whatever this server does with it, the answer is clear — a finished build,
    // or the server's own error.
    std::fs::write(cli.path("bad.toml"), "this is [not valid toml").unwrap();
    let out = cli
        .run(&["template", "build", "cli-bad", "-f", "bad.toml"])
        .expect_code(1);
    assert!(out.stderr.starts_with("hutch: "), "{}", out.stderr);
    assert!(out.stderr.lines().next().unwrap().len() > "hutch: ".len());
    let out = cli
        .run(&["template", "build", "cli-x", "-f", "missing.toml"])
        .expect_code(1);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

#[test]
fn help_and_completions() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(cli_support::exe())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F") && bash.contains("_hutch"),
        "{bash}"
    );
    assert!(bash.contains("template"), "verbs are completed");
    assert!(run(&["completions", "zsh"]).contains("#compdef hutch"));
    assert!(run(&["completions", "fish"]).contains("complete -c hutch"));
    for verb in [
        "create",
        "ls",
        "info",
        "kill",
        "pause",
        "resume",
        "stop",
        "start",
        "timeout",
        "run",
        "exec",
        "cp",
        "shell",
        "completions",
        "mcp",
    ] {
        let help = run(&[verb, "--help"]);
        assert!(
            help.contains("Example"),
            "{verb} --help has no examples:\n{help}"
        );
    }
    for verb in ["ls", "info", "rm", "build"] {
        let help = run(&["template", verb, "--help"]);
        assert!(
            help.contains("Example"),
            "template {verb} --help has no examples:\n{help}"
        );
    }
    let top = run(&["--help"]);
    for verb in [
        "run",
        "exec",
        "cp",
        "shell",
        "template",
        "completions",
        "mcp",
    ] {
        assert!(top.contains(verb), "{top}");
    }
}
