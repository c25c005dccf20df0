//! `hutch mcp`: hutch's tools for an MCP client (Claude Desktop, an agent framework) over
//! standard input and output. The tools talk to the server named like every client verb's
//! (`--url`, `HUTCH_URL`, the config file); the session's sandbox is created on the first tool
//! call and killed when the client closes the connection or stops this process.

use std::time::Duration;

use anyhow::{Context, Result};
use hutch_mcp::McpConfig;

use super::client::{block_on, Ctx};
use crate::cli::McpArgs;

pub fn run(args: McpArgs) -> Result<i32> {
    // Standard output carries the protocol: logs go to standard error only.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .init();
    if args.sandbox_timeout == 0 {
        anyhow::bail!("--sandbox-timeout must be at least 1 second");
    }
    let ctx = Ctx::new(&args.client)?;
    let config = McpConfig {
        url: ctx.url.clone(),
        api_key: ctx.api.api_key().map(str::to_string),
        template: args.template,
        sandbox_timeout: Duration::from_secs(args.sandbox_timeout),
        require_sessions: false,
    };
    block_on(async move {
        // A server that is down is reported now, on standard error, but the tools are still
        // served: MCP clients start their servers eagerly, maybe before hutch is up.
        if let Err(e) = ctx.api.health().await {
            tracing::warn!(url = %ctx.url, "hutch server not reachable yet: {}", ctx.fail(e));
        }
        hutch_mcp::serve_stdio(config).await
    })?
    .context("MCP server failed")?;
    Ok(0)
}
