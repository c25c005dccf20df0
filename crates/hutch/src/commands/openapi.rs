//! `hutch openapi`: prints the OpenAPI document `/openapi.json` serves, without a server.
//!
//! The repository keeps its output as `openapi/hutch.json`; a test fails when that copy is out
//! of date (regenerate with `cargo run -p hutch -- openapi > openapi/hutch.json`).

use std::io::{ErrorKind, Write};

use anyhow::{Context, Result};

pub fn run() -> Result<()> {
    let doc = hutch_server::openapi_document();
    let json = serde_json::to_string_pretty(&doc).context("cannot serialize the document")?;
    // Not `println!`, which panics when stdout is closed early; a reader that stopped reading
    // (`hutch openapi | head`) is not an error either.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{json}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("cannot write the document"),
        _ => Ok(()),
    }
}
