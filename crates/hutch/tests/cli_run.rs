//! `hutch run`, `hutch exec` and `hutch cp` against a real server: output where a terminal
//! user expects it, exit statuses carried through, figures saved as files, throw-away
//! sandboxes removed (also on Ctrl-C), argv kept intact, files copied byte for byte.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::Cli;
use common::server::TestServer;

#[tokio::test]
async fn run_in_throwaway_sandboxes() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);

    let out = cli.run(&["run", "print(6 * 7)"]).ok();
    assert_eq!(out.stdout, "42\n");
    assert_eq!(out.stderr, "");

    // stdout and stderr apart, the exit status carried through.
    let out = cli
        .run(&["run", "--lang", "bash", "echo out; echo err >&2; exit 3"])
        .expect_code(3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");

    let out = cli
        .run(&[
            "run",
            "--lang",
            "js",
            "console.log(1 + 2); console.error('warn')",
        ])
        .ok();
    assert_eq!(out.stdout, "3\n");
    assert!(out.stderr.contains("warn"), "{}", out.stderr);
    let out = cli
        .run(&["run", "-l", "node", "process.exit(5)"])
        .expect_code(5);
    assert_eq!(out.stdout, "");

    // An exception: traceback on stderr, status 1.
    let out = cli
        .run(&["run", "print('before')\nraise ValueError('boom')"])
        .expect_code(1);
    assert_eq!(out.stdout, "before\n");
    assert!(out.stderr.contains("ValueError: boom"), "{}", out.stderr);
    // The value of a final expression is printed, like a REPL.
    assert_eq!(cli.run(&["run", "x = 20\nx * 2 + 2"]).ok().stdout, "42\n");

    // Files: the language from the extension or the #! line.
    std::fs::write(
        cli.path("script.py"),
        "import sys\nprint('from file', sys.argv[0] != None)\n",
    )
    .unwrap();
    let out = cli.run(&["run", "-f", "script.py"]).ok();
    assert_eq!(out.stdout, "from file True\n");
    std::fs::write(
        cli.path("job"),
        "#!/bin/bash\necho \"bash $BASH_VERSINFO\" | cut -c1-4\nexit 4\n",
    )
    .unwrap();
    let out = cli.run(&["run", "-f", "job"]).expect_code(4);
    assert_eq!(out.stdout, "bash\n");
    std::fs::write(
        cli.path("main.go"),
        "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"go\", 40+2) }\n",
    )
    .unwrap();
    assert_eq!(cli.run(&["run", "-f", "main.go"]).ok().stdout, "go 42\n");
    let out = cli.run(&["run", "-f", "nope.py"]).expect_code(1);
    assert!(out.stderr.contains("nope.py"), "{}", out.stderr);

    // Standard input.
    let out = cli
        .run_with_stdin(&["run", "-"], b"import sys\nprint('stdin', 1 + 1)\n")
        .ok();
    assert_eq!(out.stdout, "stdin 2\n");
    let out = cli
        .run_with_stdin(&["run", "--lang", "bash", "-"], b"echo piped\n")
        .ok();
    assert_eq!(out.stdout, "piped\n");

    // Per-run environment and working directory.
    let out = cli
        .run(&[
            "run",
            "-l",
            "bash",
            "-e",
            "WHO=cli",
            "-w",
            "/tmp",
            "echo $WHO $(pwd)",
        ])
        .ok();
    assert_eq!(out.stdout, "cli /tmp\n");

    // A timeout is exit status 124, like timeout(1).
    let started = Instant::now();
    let out = cli
        .run(&[
            "run",
            "--timeout",
            "1",
            "import time\nprint('start', flush=True)\ntime.sleep(30)",
        ])
        .expect_code(124);
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(out.stdout, "start\n");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);

    // A server-side error (unknown language) is the server's message.
    let out = cli.run(&["run", "--lang", "cobol", "x"]).expect_code(1);
    assert!(out.stderr.starts_with("hutch: "), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("cobol"),
        "{}",
        out.stderr
    );

    // --json: the agent's whole result, the exit status still carried.
    let out = cli
        .run(&["run", "--json", "-l", "bash", "echo j; exit 2"])
        .expect_code(2);
    let v = out.json();
    assert_eq!(v["stdout"], "j\n");
    assert_eq!(v["exit_code"], 2);

    // Every throw-away sandbox is gone.
    assert!(cli.ids().is_empty(), "{:?}", cli.ids());

    // --keep keeps it.
    let out = cli.run(&["run", "--keep", "print(1)"]).ok();
    let kept = cli.ids();
    assert_eq!(kept.len(), 1);
    assert!(out.stderr.contains(&kept[0]), "{}", out.stderr);
    cli.run(&["kill", &kept[0]]).ok();
}

#[tokio::test]
async fn figures_are_saved_as_png_files() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nprint('plotted')";
    let out = cli.run(&["run", code]).ok();
    assert_eq!(out.stdout, "plotted\n");
    let png = std::fs::read(cli.path("output-1.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(out.stderr.contains("output-1.png"), "{}", out.stderr);
    // A second run never overwrites the first figure.
    let out = cli.run(&["run", "--out-dir", "figs", code]).ok();
    assert!(cli.path("figs/output-1.png").exists(), "{}", out.stderr);
    let out = cli.run(&["run", code]).ok();
    assert!(out.stderr.contains("output-2.png"), "{}", out.stderr);
    assert_eq!(std::fs::read(cli.path("output-1.png")).unwrap(), png);
    assert!(cli.ids().is_empty());
}

#[tokio::test]
async fn run_in_an_existing_sandbox_keeps_state() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let id = cli.create();
    cli.run(&["run", "--sandbox", &id, "answer = 41"]).ok();
    let out = cli.run(&["run", "-s", &id, "print(answer + 1)"]).ok();
    assert_eq!(out.stdout, "42\n");
    assert_eq!(cli.ids(), vec![id.clone()], "the sandbox is kept");
    let out = cli.run(&["run", "-s", "sb-nope", "1"]).expect_code(1);
    assert!(out.stderr.contains("RESOURCE_NOT_FOUND"), "{}", out.stderr);
}

#[tokio::test]
async fn ctrl_c_removes_the_throwaway_sandbox() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let mut child = cli
        .command(&[
            "run",
            "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the run to be under way: a sandbox exists and its code printed.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let n = stdout.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert_eq!(reader.join().unwrap(), "sleeping\n");
    assert_eq!(cli.ids().len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(cli.ids().is_empty(), "{:?}", cli.ids());
}

#[tokio::test]
async fn exec_keeps_argv_and_exit_status() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let id = cli.create();

    // argv as given: no shell splits or expands anything.
    let out = cli
        .run(&[
            "exec", &id, "--", "printf", "[%s]", "a b", "$HOME", "*", "-n",
        ])
        .ok();
    assert_eq!(out.stdout, "[a b][$HOME][*][-n]");
    let out = cli
        .run(&[
            "exec",
            &id,
            "--",
            "bash",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .expect_code(7);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let out = cli
        .run(&[
            "exec",
            "-w",
            "/tmp",
            "-e",
            "A=1",
            &id,
            "--",
            "sh",
            "-c",
            "echo $A $(pwd)",
        ])
        .ok();
    assert_eq!(out.stdout, "1 /tmp\n");
    let out = cli
        .run(&["exec", "--timeout", "1", &id, "--", "sleep", "30"])
        .expect_code(124);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    let v = cli
        .run(&["exec", "--json", &id, "--", "echo", "x"])
        .ok()
        .json();
    assert_eq!(v["stdout"], "x\n");
    assert_eq!(v["exit_code"], 0);
    // A missing program is the agent's error, not a crash.
    let out = cli.run(&["exec", &id, "--", "no-such-program-xyz"]);
    assert_ne!(out.code, 0);
    assert!(!out.stderr.is_empty());
}

#[tokio::test]
async fn cp_both_ways() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let id = cli.create();

    // Binary content, every byte value, round trip.
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    std::fs::write(cli.path("blob.bin"), &data).unwrap();
    cli.run(&["cp", "blob.bin", &format!("{id}:/workspace/blob.bin")])
        .ok();
    let sum = cli
        .run(&["exec", &id, "--", "sha256sum", "/workspace/blob.bin"])
        .ok();
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    assert!(sum.stdout.starts_with(&want), "{} vs {want}", sum.stdout);
    cli.run(&["cp", &format!("{id}:/workspace/blob.bin"), "back.bin"])
        .ok();
    assert_eq!(std::fs::read(cli.path("back.bin")).unwrap(), data);

    // Into a directory (trailing slash or existing), keeping the name; relative remote paths
    // are in /workspace.
    std::fs::write(cli.path("note.txt"), "hello note\n").unwrap();
    cli.run(&["cp", "note.txt", &format!("{id}:/tmp/")]).ok();
    cli.run(&["cp", "note.txt", &format!("{id}:sub/renamed.txt")])
        .ok();
    let out = cli
        .run(&[
            "exec",
            &id,
            "--",
            "cat",
            "/tmp/note.txt",
            "/workspace/sub/renamed.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "hello note\nhello note\n");
    std::fs::create_dir(cli.path("dl")).unwrap();
    cli.run(&["cp", &format!("{id}:/tmp/note.txt"), "dl"]).ok();
    assert_eq!(
        std::fs::read_to_string(cli.path("dl/note.txt")).unwrap(),
        "hello note\n"
    );

    // Standard input and output.
    cli.run_with_stdin(
        &["cp", "-", &format!("{id}:/tmp/from-stdin")],
        b"piped bytes\x00\x01",
    )
    .ok();
    let out = cli.run(&["cp", &format!("{id}:/tmp/from-stdin"), "-"]).ok();
    assert_eq!(out.raw_stdout, b"piped bytes\x00\x01");

    // Directories, recursively, modes kept on upload.
    let tree = cli.path("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("top.txt"), "top").unwrap();
    std::fs::write(tree.join("a/b/deep.sh"), "#!/bin/sh\necho deep\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tree.join("a/b/deep.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    cli.run(&["cp", "tree", &format!("{id}:/workspace/copied")])
        .ok();
    let out = cli
        .run(&["exec", &id, "--", "/workspace/copied/a/b/deep.sh"])
        .ok();
    assert_eq!(out.stdout, "deep\n");
    // Into an existing directory: lands under its own name.
    cli.run(&["cp", "tree", &format!("{id}:/workspace/copied")])
        .ok();
    cli.run(&[
        "exec",
        &id,
        "--",
        "test",
        "-f",
        "/workspace/copied/tree/top.txt",
    ])
    .ok();
    cli.run(&["cp", &format!("{id}:/workspace/copied"), "restored"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(cli.path("restored/top.txt")).unwrap(),
        "top"
    );
    assert_eq!(
        std::fs::read_to_string(cli.path("restored/a/b/deep.sh")).unwrap(),
        "#!/bin/sh\necho deep\n"
    );
    assert!(cli.path("restored/tree/a/b/deep.sh").exists());

    // Errors.
    let out = cli
        .run(&["cp", &format!("{id}:/nope/x"), "x"])
        .expect_code(1);
    assert!(out.stderr.contains("/nope/x"), "{}", out.stderr);
    let out = cli.run(&["cp", "a", "b"]).expect_code(1);
    assert!(out.stderr.contains("ID:PATH"), "{}", out.stderr);
    let out = cli
        .run(&["cp", "missing.txt", &format!("{id}:/tmp/")])
        .expect_code(1);
    assert!(out.stderr.contains("missing.txt"), "{}", out.stderr);
    let out = cli.run(&["cp", "note.txt", "sb-nope:/tmp/"]).expect_code(1);
    assert!(out.stderr.contains("RESOURCE_NOT_FOUND"), "{}", out.stderr);
}
