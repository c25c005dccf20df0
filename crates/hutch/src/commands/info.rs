//! `hutch info ID`: one sandbox's details.

use anyhow::Result;
use serde_json::Value;

use super::client::{block_on, Ctx};
use super::output::{color_stdout, print_fields, print_json, status_text, time_field};
use crate::cli::IdArgs;

pub fn run(args: IdArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let s = ctx
            .api
            .get_sandbox(&args.id)
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&s.raw);
            return Ok(0);
        }
        let res = |k: &str| {
            s.resources
                .as_ref()
                .and_then(|r| r.get(k))
                .and_then(Value::as_u64)
        };
        let resources = match (res("vcpu"), res("memory_mb"), res("disk_mb")) {
            (Some(c), Some(m), Some(d)) => format!("{c} vCPU, {m} MiB memory, {d} MiB disk"),
            _ => "-".into(),
        };
        let template = match (&s.template_name, &s.template_id) {
            (Some(n), Some(i)) if n != i => format!("{n} ({i})"),
            (Some(n), _) => n.clone(),
            (None, Some(i)) => i.clone(),
            (None, None) => "-".into(),
        };
        print_fields(&[
            ("id", s.id.clone()),
            ("status", status_text(&s.status, color_stdout())),
            ("template", template),
            ("created", time_field(s.created_at.as_deref(), "-")),
            ("expires", time_field(s.expires_at.as_deref(), "never")),
            (
                "timeout",
                s.timeout_seconds
                    .map_or_else(|| "none".to_string(), |t| format!("{t} s")),
            ),
            (
                "internet",
                s.internet_access
                    .map_or_else(|| "-".to_string(), |i| if i { "yes" } else { "no" }.into()),
            ),
            ("resources", resources),
            ("agent", s.public_host.clone().unwrap_or_else(|| "-".into())),
        ]);
        Ok(0)
    })?
}
