//! `hutch shell ID`: an interactive terminal in a sandbox over the agent's `/terminal`
//! WebSocket.
//!
//! On a local terminal the TTY goes into raw mode, so every key (Ctrl-C, Ctrl-Z, arrows) reaches
//! the remote shell; the remote size follows the local one (at start and on SIGWINCH). A guard
//! puts the TTY back on every way out — shell exit, closed socket, error, signal, panic. Without
//! a terminal, standard input is typed into the shell and its end becomes Ctrl-D (repeated
//! until the shell exits).
//! hutch exits with the shell's exit status.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use hutch_client::sandbox::TerminalEvent;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::client::{block_on, Ctx};
use crate::cli::ShellArgs;

/// How often Ctrl-D is sent again after standard input (not a terminal) has ended.
const EOF_REPEAT: std::time::Duration = std::time::Duration::from_millis(250);

/// Raw mode for as long as it lives.
struct RawMode;

impl RawMode {
    fn enable() -> Result<Self> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Reads standard input on a thread of its own: a blocking read cannot be cancelled, and the
/// thread is simply left behind at exit.
fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

/// Turns input bytes into text for the JSON frame, holding back an incomplete UTF-8 sequence
/// until its remaining bytes arrive.
#[derive(Default)]
struct Utf8Input {
    pending: Vec<u8>,
}

impl Utf8Input {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                // Incomplete at the end: send what is whole, keep the rest.
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                s
            }
        }
    }
}

pub fn run(args: ShellArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let agent = ctx.agent(&args.id).await?;
        let (mut writer, mut reader) = agent.terminal().await.map_err(|e| ctx.fail_agent(e))?;
        let tty = std::io::stdin().is_terminal();
        let guard = if tty { Some(RawMode::enable()?) } else { None };
        if tty {
            if let Ok((cols, rows)) = crossterm::terminal::size() {
                writer
                    .resize(cols, rows)
                    .await
                    .map_err(|e| ctx.fail_agent(e))?;
            }
        }
        let mut input = stdin_reader();
        let mut stdin_open = true;
        let mut winch = signal(SignalKind::window_change()).context("cannot watch resizes")?;
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut utf8 = Utf8Input::default();
        let mut eof_ticks = tokio::time::interval(EOF_REPEAT);
        let mut out = std::io::stdout();
        let code = loop {
            tokio::select! {
                ev = reader.next() => match ev {
                    Ok(TerminalEvent::Output(text)) => {
                        let _ = out.write_all(text.as_bytes());
                        let _ = out.flush();
                    }
                    Ok(TerminalEvent::Exit(code)) => break Ok(code),
                    Ok(TerminalEvent::Closed) => {
                        break Err(anyhow::anyhow!("the terminal closed without an exit status"))
                    }
                    Err(e) => break Err(ctx.fail_agent(e)),
                },
                data = input.recv(), if stdin_open => match data {
                    Some(bytes) => {
                        let text = utf8.push(&bytes);
                        if !text.is_empty() {
                            if let Err(e) = writer.input(&text).await {
                                break Err(ctx.fail_agent(e));
                            }
                        }
                    }
                    None => stdin_open = false,
                },
                // End of input (a pipe): Ctrl-D makes the shell finish and exit. It is repeated
                // because one typed while the shell switches its terminal mode (at start-up,
                // around each command) can be lost; more of them only repeat "no more input".
                _ = eof_ticks.tick(), if !stdin_open => {
                    if let Err(e) = writer.input("\u{4}").await {
                        break Err(ctx.fail_agent(e));
                    }
                }
                _ = winch.recv() => {
                    if tty {
                        if let Ok((cols, rows)) = crossterm::terminal::size() {
                            let _ = writer.resize(cols, rows).await;
                        }
                    }
                }
                _ = term.recv() => break Ok(143),
                _ = hup.recv() => break Ok(129),
                // Only without a terminal (raw mode turns Ctrl-C into input): forward it.
                _ = int.recv() => {
                    let _ = writer.input("\u{3}").await;
                }
            }
        };
        writer.close().await;
        drop(guard);
        code
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_utf8_is_held_back() {
        let mut u = Utf8Input::default();
        let e = "é".as_bytes();
        assert_eq!(u.push(b"a"), "a");
        assert_eq!(u.push(&e[..1]), "");
        assert_eq!(u.push(&e[1..]), "é");
        assert_eq!(u.push(&[0xff, b'x']), "\u{fffd}x");
    }
}
