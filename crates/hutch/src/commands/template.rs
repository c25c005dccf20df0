//! `hutch template ls|info|rm|build`.
//!
//! `build` sends the TOML spec as text to `POST /v1/templates/builds` and follows the build:
//! its log as it grows (`…/logs?offset=N`) and its status (`…/status`). On a terminal a
//! progress bar shows the percentage and the current step with the log scrolling above it;
//! otherwise the log is printed line by line. A failed build exits non-zero with the server's
//! error message and the step that failed.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hutch_client::api::BuildStatus;
use hutch_client::{ApiError, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::{block_on, interrupted, Ctx};
use super::output::{
    color_stdout, print_fields, print_json, print_table, say, status_text, time_field,
};
use crate::cli::{TemplateBuildArgs, TemplateCommand, TemplateLsArgs, TemplateNameArgs};

/// How often a running build is polled.
const POLL: Duration = Duration::from_millis(1000);

pub fn run(cmd: TemplateCommand) -> Result<i32> {
    match cmd {
        TemplateCommand::Ls(a) => ls(a),
        TemplateCommand::Info(a) => info(a),
        TemplateCommand::Rm(a) => rm(a),
        TemplateCommand::Build(a) => build(a),
    }
}

fn ls(args: TemplateLsArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let all = ctx.api.list_templates().await.map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&Value::Array(all.into_iter().map(|t| t.raw).collect()));
            return Ok(0);
        }
        let rows = all
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.id.clone(),
                    t.status.clone().unwrap_or_else(|| "-".into()),
                    t.language.clone().unwrap_or_else(|| "-".into()),
                    t.description.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["NAME", "ID", "STATUS", "LANGUAGE", "DESCRIPTION"], rows);
        Ok(0)
    })?
}

fn info(args: TemplateNameArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let t = ctx
            .api
            .get_template(&args.name)
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&t.raw);
            return Ok(0);
        }
        let res = |k: &str| {
            t.default_resources
                .as_ref()
                .and_then(|r| r.get(k))
                .and_then(Value::as_u64)
        };
        let resources = match (res("vcpu"), res("memory_mb"), res("disk_gb")) {
            (Some(c), Some(m), Some(d)) => format!("{c} vCPU, {m} MiB memory, {d} GiB disk"),
            _ => "-".into(),
        };
        let yes_no = |b: Option<bool>| b.map_or("-", |b| if b { "yes" } else { "no" }).to_string();
        let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        print_fields(&[
            ("name", t.name.clone()),
            ("id", t.id.clone()),
            ("display name", or_dash(&t.display_name)),
            ("description", or_dash(&t.description)),
            (
                "status",
                t.status
                    .as_deref()
                    .map_or_else(|| "-".into(), |s| status_text(s, color_stdout())),
            ),
            ("language", or_dash(&t.language)),
            ("category", or_dash(&t.category)),
            ("active", yes_no(t.is_active)),
            ("built in", yes_no(t.is_public)),
            ("resources", resources),
            ("build", or_dash(&t.build_id)),
            ("created", time_field(t.created_at.as_deref(), "-")),
        ]);
        Ok(0)
    })?
}

fn rm(args: TemplateNameArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let v = ctx
            .api
            .delete_template(&args.name)
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&v);
        } else {
            say(&format!("{} deleted", args.name));
        }
        Ok(0)
    })?
}

/// Where the build's progress goes: a bar on a terminal, plain lines otherwise.
struct Progress {
    sink: Sink,
    /// Log text after the last newline: the log arrives in pieces that may split a line.
    partial: String,
}

enum Sink {
    Bar(ProgressBar),
    /// Plain lines; log to stdout unless `--json` keeps stdout for the final object.
    Plain {
        json: bool,
        last_step: Option<String>,
    },
}

impl Progress {
    fn new(json: bool) -> Self {
        let sink = if !json && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {pos:>3}% {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Sink::Bar(bar)
        } else {
            Sink::Plain {
                json,
                last_step: None,
            }
        };
        Self {
            sink,
            partial: String::new(),
        }
    }

    fn line(&self, line: &str) {
        match &self.sink {
            Sink::Bar(b) => b.println(line),
            Sink::Plain { json: false, .. } => say(line),
            Sink::Plain { json: true, .. } => eprintln!("{line}"),
        }
    }

    /// A piece of the build log: whole lines are printed, the rest waits for its newline.
    fn log(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn status(&mut self, s: &BuildStatus) {
        let pct = s.progress.unwrap_or(0.0).clamp(0.0, 100.0) as u64;
        match &mut self.sink {
            Sink::Bar(b) => {
                b.set_position(pct);
                b.set_message(s.current_step.clone().unwrap_or_else(|| s.status.clone()));
            }
            Sink::Plain { last_step, .. } => {
                if s.current_step.is_some() && *last_step != s.current_step {
                    *last_step = s.current_step.clone();
                    eprintln!(
                        "hutch: [{pct:>3}%] {}",
                        s.current_step.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Prints what is left of the log and removes the bar.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest);
        }
        if let Sink::Bar(b) = &self.sink {
            b.finish_and_clear();
        }
    }
}

fn build(args: TemplateBuildArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    let spec = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    block_on(async {
        let started = ctx
            .api
            .start_build(&args.name, &spec, args.force)
            .await
            .map_err(|e| match e {
                ApiError::Server {
                    status: StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED,
                    ref code,
                    ..
                } if code.as_deref() != Some("TEMPLATE_NOT_FOUND") => anyhow::anyhow!(
                    "{}\nhint: this server does not build templates (POST /v1/templates/builds is not there); upgrade it",
                    ctx.fail(e)
                ),
                e => ctx.fail(e),
            })?;
        let build_id = started.build_id.clone();
        let mut progress = Progress::new(ctx.json);
        progress.line(&format!(
            "building template {} (build {build_id})",
            args.name
        ));
        tokio::select! {
            r = follow(&ctx, &build_id, &mut progress) => {
                progress.finish();
                let status = r?;
                finish(&ctx, &args.name, &status)
            }
            code = interrupted() => {
                progress.finish();
                eprintln!("hutch: stopped following; build {build_id} goes on on the server");
                Ok(code)
            }
        }
    })?
}

/// Polls log and status until the build ends; returns the final status.
async fn follow(
    ctx: &Ctx,
    build_id: &str,
    progress: &mut Progress,
) -> Result<hutch_client::api::Object<BuildStatus>> {
    let mut offset = 0u64;
    let mut logs_available = true;
    loop {
        if logs_available {
            logs_available = pull_logs(ctx, build_id, &mut offset, progress).await;
        }
        let status = ctx
            .api
            .build_status(build_id)
            .await
            .map_err(|e| ctx.fail(e))?;
        progress.status(&status);
        if status.is_final() {
            // The rest of the log: it may still be flushing right after the status changed.
            let until = Instant::now() + Duration::from_secs(5);
            while logs_available && Instant::now() < until {
                let before = offset;
                logs_available = pull_logs(ctx, build_id, &mut offset, progress).await;
                if offset == before {
                    break;
                }
            }
            return Ok(status);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the log after `offset`; false when the server has no log for the build (the build
/// is still followed through its status).
async fn pull_logs(ctx: &Ctx, build_id: &str, offset: &mut u64, progress: &mut Progress) -> bool {
    match ctx.api.build_logs(build_id, *offset).await {
        Ok(l) => {
            if !l.logs.is_empty() {
                progress.log(&l.logs);
            }
            *offset = l.offset.max(*offset);
            true
        }
        Err(e) => {
            progress.line(&format!("hutch: no build log: {}", ctx.fail(e)));
            false
        }
    }
}

fn finish(ctx: &Ctx, name: &str, status: &hutch_client::api::Object<BuildStatus>) -> Result<i32> {
    if ctx.json {
        print_json(&status.raw);
    }
    if status.succeeded() {
        if !ctx.json {
            let took = status
                .build_duration_ms
                .map(|ms| format!(" in {:.1} s", ms as f64 / 1000.0))
                .unwrap_or_default();
            say(&format!(
                "built template {name} ({}){took}",
                status.template_id.as_deref().unwrap_or("-")
            ));
        }
        return Ok(0);
    }
    let reason = status
        .error_message
        .clone()
        .unwrap_or_else(|| format!("status {}", status.status));
    match &status.current_step {
        Some(step) => anyhow::bail!("template build failed at step {step}: {reason}"),
        None => anyhow::bail!("template build failed: {reason}"),
    }
}
