//! `hutch shell` driven the way a person uses it: on a real pseudo-terminal (raw mode, typed
//! keys, a resize, the shell's exit status), and with a pipe instead of a terminal.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;
mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_support::Cli;
use common::server::TestServer;

/// The controlling side of a pseudo-terminal, with its output collected by a thread.
struct Pty {
    writer: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Pty {
    fn type_text(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits until the output so far contains `needle`.
    fn expect(&mut self, needle: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(needle) {
            let left = until.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {needle:?} on the terminal; it showed: {:?}", self.seen),
            }
        }
    }
}

fn wait(child: &mut Child, limit: Duration) -> i32 {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("hutch shell did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Terminal settings as `stty -g` shows them.
fn stty(slave: &str) -> String {
    let o = std::process::Command::new("stty")
        .args(["-g", "-F", slave])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()
}

#[tokio::test]
async fn interactive_shell_on_a_pty() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let id = cli.create();

    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let slave_path = slave_path.to_string_lossy().into_owned();
    let cooked = stty(&slave_path);
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    // `setsid -c`: a session of its own with the PTY as controlling terminal, like a shell
    // gives a program it starts (so window-size changes signal it).
    let mut child = cli
        .setsid(&["shell", &id])
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .unwrap();
    drop(pty.slave);
    let master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut term = Pty {
        writer: master,
        output: rx,
        seen: String::new(),
    };

    term.type_text("echo hello-pty-$((40+2))\n");
    term.expect("hello-pty-42");
    // The local terminal is in raw mode while the shell runs.
    assert_ne!(stty(&slave_path), cooked, "the terminal is not in raw mode");
    // The remote terminal has the local size, and follows a resize.
    term.type_text("stty size\n");
    term.expect("30 100");
    std::process::Command::new("stty")
        .args(["-F", &slave_path, "rows", "40", "cols", "120"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    term.type_text("stty size\n");
    term.expect("40 120");
    // Ctrl-C reaches the remote shell instead of killing hutch.
    term.type_text("sleep 30\n");
    std::thread::sleep(Duration::from_millis(300));
    term.type_text("\u{3}");
    term.type_text("echo after-$((6*7))\n");
    term.expect("after-42");

    term.type_text("exit 3\n");
    assert_eq!(wait(&mut child, Duration::from_secs(20)), 3);
    // The terminal is back as it was.
    assert_eq!(stty(&slave_path), cooked, "terminal settings not restored");
}

#[tokio::test]
async fn shell_without_a_terminal_reads_a_pipe() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let id = cli.create();
    let out = cli.run_with_stdin(&["shell", &id], b"echo piped-$((2+3))\nexit 4\n");
    assert_eq!(
        out.code, 4,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("piped-5"), "{}", out.stdout);
    // End of input ends the shell (Ctrl-D), status 0.
    let out = cli.run_with_stdin(&["shell", &id], b"echo bye\n");
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("bye"), "{}", out.stdout);

    let out = cli.run_with_stdin(&["shell", "sb-nope"], b"");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("RESOURCE_NOT_FOUND"), "{}", out.stderr);
}
