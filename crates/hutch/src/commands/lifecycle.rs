//! `hutch kill|pause|resume|stop|start ID...` and `hutch timeout ID SECONDS`.
//!
//! Several ids are handled one after another; a failure is reported and the rest still run,
//! and the exit status is 1 if any failed. With `--json` one id prints the server's object and
//! several print an array of them.

use anyhow::Result;
use hutch_client::Lifecycle;
use serde_json::Value;

use super::client::{block_on, Ctx};
use super::output::{print_json, relative_time, say};
use crate::cli::{IdsArgs, TimeoutArgs};

/// What to do to each sandbox.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// `DELETE`.
    Kill,
    /// A lifecycle call.
    Verb(Lifecycle),
}

impl Action {
    fn past(self) -> &'static str {
        match self {
            Action::Kill => "deleted",
            Action::Verb(Lifecycle::Pause) => "paused",
            Action::Verb(Lifecycle::Resume) => "resumed",
            Action::Verb(Lifecycle::Stop) => "stopped",
            Action::Verb(Lifecycle::Start) => "started",
        }
    }
}

pub fn run(action: Action, args: IdsArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let mut objects = Vec::new();
        let mut failed = 0;
        for id in &args.ids {
            let r = match action {
                Action::Kill => ctx.api.delete_sandbox(id).await,
                Action::Verb(v) => ctx.api.lifecycle(id, v).await.map(|o| o.raw),
            };
            match r {
                Ok(v) => {
                    if ctx.json {
                        objects.push(v);
                    } else {
                        say(&format!("{id} {}", action.past()));
                    }
                }
                Err(e) => {
                    failed += 1;
                    let e = ctx.fail(e);
                    if args.ids.len() > 1 {
                        eprintln!("hutch: {id}: {e:#}");
                    } else {
                        // A single id: the error is the command's error.
                        return Err(e);
                    }
                }
            }
        }
        if ctx.json {
            match (args.ids.len(), objects.pop()) {
                (1, Some(v)) => print_json(&v),
                (_, last) => {
                    objects.extend(last);
                    print_json(&Value::Array(objects));
                }
            }
        }
        Ok(if failed > 0 { 1 } else { 0 })
    })?
}

pub fn timeout(args: TimeoutArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    if args.seconds <= 0 {
        anyhow::bail!("SECONDS must be positive (use `hutch kill` to delete now)");
    }
    block_on(async {
        let s = ctx
            .api
            .set_timeout(&args.id, args.seconds)
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&s.raw);
        } else {
            say(&format!(
                "{} expires {} ({})",
                s.id,
                relative_time(s.expires_at.as_deref(), "never"),
                s.expires_at.as_deref().unwrap_or("-")
            ));
        }
        Ok(0)
    })?
}
