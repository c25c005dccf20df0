//! Accumulates what an execution produces into an [`Outcome`], forwarding each piece to a
//! stream as it arrives.

use super::proc::KernelMsg;
use super::{Event, EventSink, Outcome};

/// Output kept per stream; more is dropped (with a marker) so a runaway program cannot exhaust
/// the agent's memory.
pub(super) const MAX_CAPTURE: usize = 16 << 20;
/// Rich output kept per execution.
const MAX_RICH: usize = 64 << 20;

pub(super) struct Collector {
    pub outcome: Outcome,
    sink: Option<EventSink>,
    rich_bytes: usize,
}

impl Collector {
    pub(super) fn new(outcome: Outcome, sink: Option<EventSink>) -> Self {
        Self {
            outcome,
            sink,
            rich_bytes: 0,
        }
    }

    /// Sends an event to the stream, if any. A stream whose reader went away is dropped; the
    /// execution itself goes on (the caller decides whether to interrupt it).
    async fn forward(&mut self, event: Event) {
        if let Some(sink) = &self.sink {
            if sink.send(event).await.is_err() {
                self.sink = None;
            }
        }
    }

    pub(super) async fn stdout(&mut self, text: String) {
        if append_capped(&mut self.outcome.stdout, &text) {
            self.outcome.truncated = true;
        }
        self.forward(Event::Stdout(text)).await;
    }

    pub(super) async fn stderr(&mut self, text: String) {
        if append_capped(&mut self.outcome.stderr, &text) {
            self.outcome.truncated = true;
        }
        self.forward(Event::Stderr(text)).await;
    }

    pub(super) async fn push(&mut self, msg: KernelMsg) {
        match msg {
            KernelMsg::Stdout(s) => self.stdout(s).await,
            KernelMsg::Stderr(s) => self.stderr(s).await,
            KernelMsg::Output(out) => {
                let size: usize = out
                    .data
                    .values()
                    .map(|v| v.as_str().map_or(64, str::len))
                    .sum();
                if self.rich_bytes + size > MAX_RICH {
                    self.outcome.truncated = true;
                    return;
                }
                self.rich_bytes += size;
                self.outcome.outputs.push(out.clone());
                self.forward(Event::Output(out)).await;
            }
            KernelMsg::Error(e) => self.outcome.exception = Some(e),
            KernelMsg::Session { op, report } => match op.as_str() {
                "restore" => self.outcome.session_restored = Some(report),
                _ => self.outcome.session_persisted = Some(report),
            },
            KernelMsg::Ready { .. } | KernelMsg::Done(_) => {}
        }
    }

    /// Adds an explanation from hutch to stderr (and the stream).
    pub(super) async fn note(&mut self, message: &str) {
        let mut text = String::new();
        if !self.outcome.stderr.is_empty() && !self.outcome.stderr.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("[hutch] ");
        text.push_str(message);
        text.push('\n');
        self.stderr(text).await;
    }
}

/// Appends up to the cap; returns true when something was dropped.
fn append_capped(buf: &mut String, text: &str) -> bool {
    const MARKER: &str = "\n[output truncated by hutch]\n";
    if buf.len() >= MAX_CAPTURE {
        return true;
    }
    let room = MAX_CAPTURE - buf.len();
    if text.len() <= room {
        buf.push_str(text);
        false
    } else {
        let cut = super::utf8::floor_boundary(text, room);
        buf.push_str(&text[..cut]);
        buf.push_str(MARKER);
        true
    }
}
