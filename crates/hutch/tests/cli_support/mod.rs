//! Running the real `hutch` binary against a `TestServer`, as a user would: with the server in
//! `HUTCH_URL`/`HUTCH_API_KEY`, an empty config directory and a scratch working directory.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::server::{TestServer, API_KEY};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            raw_stdout: o.stdout,
        }
    }

    /// Panics with everything printed unless the exit status is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// The CLI pointed at one server.
pub struct Cli {
    pub url: String,
    pub config_home: tempfile::TempDir,
    pub cwd: tempfile::TempDir,
}

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_hutch")
}

impl Cli {
    pub fn new(srv: &TestServer) -> Self {
        Self {
            url: srv.url.clone(),
            config_home: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    /// A command with the server in the environment (not yet run).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.bare(args);
        c.env("HUTCH_URL", &self.url).env("HUTCH_API_KEY", API_KEY);
        c
    }

    /// A command with no server settings at all (flags or the config file must give them).
    pub fn bare(&self, args: &[&str]) -> Command {
        let mut c = Command::new(exe());
        c.args(args);
        self.configure(&mut c);
        c
    }

    /// `setsid -c hutch ARGS`: the binary leads a session of its own whose controlling
    /// terminal is its standard input (as when a login shell starts it on a terminal).
    pub fn setsid(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setsid");
        c.arg("-c").arg(exe()).args(args);
        self.configure(&mut c);
        c.env("HUTCH_URL", &self.url).env("HUTCH_API_KEY", API_KEY);
        c
    }

    fn configure(&self, c: &mut Command) {
        c.current_dir(self.cwd.path())
            .env_remove("HUTCH_URL")
            .env_remove("HUTCH_API_KEY")
            .env_remove("NO_COLOR")
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .stdin(Stdio::null());
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run::from(out)
    }

    /// Runs with `--json`, expects success, returns the JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.run(&a).ok().json()
    }

    /// Creates a sandbox; returns its id.
    pub fn create(&self) -> String {
        let v = self.json(&["create"]);
        v["id"].as_str().unwrap().to_string()
    }

    /// Ids of every sandbox.
    pub fn ids(&self) -> Vec<String> {
        self.run(&["ls", "-q"])
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.cwd.path().join(name)
    }
}
