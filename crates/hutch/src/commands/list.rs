//! `hutch ls`: the sandboxes as a table (or ids, or the server's objects).

use anyhow::Result;
use serde_json::Value;

use super::client::{block_on, Ctx};
use super::output::{print_json, print_table, relative_time, say};
use crate::cli::LsArgs;

pub fn run(args: LsArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    block_on(async {
        let all = ctx
            .api
            .list_sandboxes(args.status.as_deref())
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&Value::Array(all.into_iter().map(|s| s.raw).collect()));
        } else if args.quiet {
            for s in &all {
                say(&s.id);
            }
        } else {
            let rows = all
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.status.clone(),
                        s.template_name
                            .clone()
                            .or_else(|| s.template_id.clone())
                            .unwrap_or_default(),
                        relative_time(s.created_at.as_deref(), "-"),
                        relative_time(s.expires_at.as_deref(), "never"),
                    ]
                })
                .collect();
            print_table(&["ID", "STATUS", "TEMPLATE", "CREATED", "EXPIRES"], rows);
        }
        Ok(0)
    })?
}
