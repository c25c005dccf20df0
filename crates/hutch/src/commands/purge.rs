//! `hutch purge`: removes every sandbox of a data directory and stops its spawner.

use anyhow::{Context, Result};
use hutch_runtime::Backend;

use crate::cli::PurgeArgs;
use crate::setup;

pub fn run(args: PurgeArgs) -> Result<()> {
    setup::require_root()?;
    let dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("no data directory at {}", args.data_dir.display()))?;
    let backend = setup::backend(&dir)?;
    let ids = backend.list()?;
    let mut failed = 0;
    for id in &ids {
        match backend.kill(id) {
            Ok(()) => println!("removed {id}"),
            Err(e) => {
                failed += 1;
                eprintln!("cannot remove {id}: {e}");
            }
        }
    }
    backend
        .shutdown_spawner()
        .context("cannot stop the spawner")?;
    println!(
        "{} sandbox(es) removed, spawner stopped",
        ids.len() - failed
    );
    if failed > 0 {
        anyhow::bail!("{failed} sandbox(es) could not be removed");
    }
    Ok(())
}
