//! `hutch create`: a new sandbox; its id on standard output, so `ID=$(hutch create)` works.

use std::io::IsTerminal;

use anyhow::Result;
use hutch_client::CreateSandbox;

use super::client::{block_on, env_map, Ctx};
use super::output::{print_json, relative_time, say};
use crate::cli::CreateArgs;

pub fn run(args: CreateArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    let req = CreateSandbox {
        template_name: Some(args.template.clone()),
        timeout_seconds: args.timeout,
        internet_access: args.no_internet.then_some(false),
        env_vars: env_map(&args.env),
    };
    block_on(async {
        let s = ctx
            .api
            .create_sandbox(&req)
            .await
            .map_err(|e| ctx.fail(e))?;
        if ctx.json {
            print_json(&s.raw);
        } else {
            say(&s.id);
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "created from {} ({}, expires {})",
                    s.template_name.as_deref().unwrap_or(&args.template),
                    s.status,
                    relative_time(s.expires_at.as_deref(), "never"),
                );
            }
        }
        Ok(0)
    })?
}
