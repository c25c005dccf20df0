//! `hutch exec ID -- CMD ARGS...`: one program in a sandbox, argv as given (no shell), its
//! output and exit status carried through.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use hutch_client::sandbox::CommandRequest;
use serde_json::Value;

use super::client::{block_on, env_map, interrupted, Ctx};
use super::output::print_json;
use crate::cli::ExecArgs;

pub fn run(args: ExecArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    let Some((command, rest)) = args.command.split_first() else {
        anyhow::bail!("give the program to run after `--`");
    };
    let req = CommandRequest {
        command: command.clone(),
        args: rest.to_vec(),
        timeout: args.timeout.max(1),
        workdir: args.workdir.clone(),
        env: env_map(&args.env),
    };
    block_on(async {
        let agent = ctx
            .agent(&args.id)
            .await?
            .with_timeout(Duration::from_secs(req.timeout + 30));
        let v = tokio::select! {
            r = agent.run_command(&req) => r.map_err(|e| ctx.fail_agent(e))?,
            code = interrupted() => return Ok(code),
        };
        if ctx.json {
            print_json(&v);
        } else {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let mut out = std::io::stdout();
            let _ = out.write_all(text("stdout").as_bytes());
            let _ = out.flush();
            let mut err = std::io::stderr();
            let _ = err.write_all(text("stderr").as_bytes());
            if v["timed_out"].as_bool() == Some(true) {
                let _ = writeln!(err, "hutch: timed out after {} s", req.timeout);
            }
        }
        Ok(exit_code(&v))
    })?
}

fn exit_code(v: &Value) -> i32 {
    if v["timed_out"].as_bool() == Some(true) {
        return 124;
    }
    v["exit_code"]
        .as_i64()
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(1)
}
