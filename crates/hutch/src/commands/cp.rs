//! `hutch cp SRC DST`: files and directories between this machine and a sandbox.
//!
//! One side is `ID:PATH`. Directories are copied recursively through the agent's file API
//! (a directory listing, then one upload or download per file), which needs nothing in the
//! sandbox — not even `tar`. Semantics follow `cp -r`: a directory lands inside DST when DST is
//! an existing directory, else it becomes DST. Symbolic links are skipped with a warning
//! (following them could leave the tree or loop). `-` is standard input or output, for files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hutch_client::sandbox::{upload_file, PathKind};
use hutch_client::SandboxClient;
use serde_json::json;

use super::client::{block_on, interrupted, Ctx};
use super::output::{human_bytes, print_json};
use crate::cli::CpArgs;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Stdio,
    Remote { id: String, path: String },
}

/// `ID:PATH` is remote when ID looks like an id (no `/`, not empty, not starting with `.`);
/// write `./a:b` for a local file with a colon in its name.
fn parse(s: &str) -> Location {
    if s == "-" {
        return Location::Stdio;
    }
    if let Some((id, path)) = s.split_once(':') {
        if !id.is_empty() && !id.contains('/') && !id.starts_with('.') {
            let path = if path.is_empty() { "." } else { path };
            return Location::Remote {
                id: id.to_string(),
                path: path.to_string(),
            };
        }
    }
    Location::Local(PathBuf::from(s))
}

/// What was copied.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
    skipped: u64,
}

pub fn run(args: CpArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    let (src, dst) = (parse(&args.src), parse(&args.dst));
    block_on(async {
        let work = async {
            match (&src, &dst) {
                (Location::Remote { .. }, Location::Remote { .. }) => anyhow::bail!(
                    "both sides are in sandboxes; copy through this machine in two steps"
                ),
                (Location::Remote { id, path }, local) => {
                    let agent = ctx.agent(id).await?;
                    download(&ctx, &agent, path, local).await
                }
                (local, Location::Remote { id, path }) => {
                    let agent = ctx.agent(id).await?;
                    upload(&ctx, &agent, local, path).await
                }
                _ => anyhow::bail!("one of SRC and DST must be ID:PATH, a path in a sandbox"),
            }
        };
        let tally = tokio::select! {
            r = work => r?,
            code = interrupted() => return Ok(code),
        };
        if ctx.json {
            print_json(
                &json!({"files": tally.files, "bytes": tally.bytes, "skipped": tally.skipped}),
            );
        } else if std::io::stderr().is_terminal() && !matches!(dst, Location::Stdio) {
            eprintln!(
                "copied {} file(s), {}",
                tally.files,
                human_bytes(tally.bytes)
            );
        }
        Ok(if tally.skipped > 0 { 1 } else { 0 })
    })?
}

fn basename(p: &str) -> Option<&str> {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
}

fn join_remote(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

async fn upload(ctx: &Ctx, agent: &SandboxClient, src: &Location, dst: &str) -> Result<Tally> {
    let mut tally = Tally::default();
    let fail = |e| ctx.fail_agent(e);
    let local = match src {
        Location::Stdio => {
            if dst.ends_with('/') || agent.stat(dst).await.map_err(fail)? == PathKind::Directory {
                anyhow::bail!("{dst} is a directory; give a file path for standard input");
            }
            let name = basename(dst).unwrap_or("stdin").to_string();
            agent
                .upload(tokio::io::stdin(), None, &name, dst, None)
                .await
                .map_err(fail)?;
            tally.files = 1;
            return Ok(tally);
        }
        Location::Local(p) => p,
        Location::Remote { .. } => unreachable_remote()?,
    };
    let meta = std::fs::symlink_metadata(local)
        .with_context(|| format!("cannot read {}", local.display()))?;
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(local).with_context(|| format!("cannot follow {}", local.display()))?
    } else {
        meta
    };
    if !meta.is_dir() {
        // A file: the agent puts it inside DST when DST is a directory or ends in `/`.
        upload_file(agent, local, dst).await.map_err(fail)?;
        tally.files = 1;
        tally.bytes = meta.len();
        return Ok(tally);
    }
    let root = match agent.stat(dst).await.map_err(fail)? {
        PathKind::Directory => {
            let name = local
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .context("cannot name the directory being copied")?;
            join_remote(dst, &name)
        }
        PathKind::File => {
            anyhow::bail!("{dst} is a file in the sandbox; cannot copy a directory over it")
        }
        PathKind::Missing => dst.trim_end_matches('/').to_string(),
    };
    let mut stack = vec![(local.to_path_buf(), root)];
    while let Some((dir, remote)) = stack.pop() {
        agent.mkdir(&remote).await.map_err(fail)?;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = join_remote(&remote, &name);
            let ft = entry
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            if ft.is_dir() {
                stack.push((path, target));
            } else if ft.is_file() {
                upload_file(agent, &path, &target).await.map_err(fail)?;
                tally.files += 1;
                tally.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            } else {
                eprintln!(
                    "hutch: skipped {} (not a regular file or directory)",
                    path.display()
                );
                tally.skipped += 1;
            }
        }
    }
    Ok(tally)
}

fn unreachable_remote<T>() -> Result<T> {
    anyhow::bail!("one of SRC and DST must be a local path")
}

async fn download(ctx: &Ctx, agent: &SandboxClient, src: &str, dst: &Location) -> Result<Tally> {
    let fail = |e| ctx.fail_agent(e);
    let mut tally = Tally::default();
    let kind = agent.stat(src).await.map_err(fail)?;
    if kind == PathKind::Missing {
        anyhow::bail!("{src}: no such file or directory in the sandbox");
    }
    let local = match dst {
        Location::Stdio => {
            if kind == PathKind::Directory {
                anyhow::bail!("{src} is a directory; copy it to a local path, not -");
            }
            let mut out = tokio::io::stdout();
            tally.bytes = agent.download(src, &mut out).await.map_err(fail)?;
            tally.files = 1;
            return Ok(tally);
        }
        Location::Local(p) => p,
        Location::Remote { .. } => unreachable_remote()?,
    };
    let name = basename(src).unwrap_or("download");
    let target = if local.is_dir() {
        local.join(name)
    } else {
        local.clone()
    };
    if kind == PathKind::File {
        tally.bytes = download_file(ctx, agent, src, &target).await?;
        tally.files = 1;
        return Ok(tally);
    }
    let mut stack = vec![(src.trim_end_matches('/').to_string(), target)];
    while let Some((remote, dir)) = stack.pop() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut entries = agent.list(&remote).await.map_err(fail)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let path = dir.join(&e.name);
            let remote_path = join_remote(&remote, &e.name);
            if e.is_symlink {
                eprintln!("hutch: skipped {remote_path} (a symbolic link)");
                tally.skipped += 1;
            } else if e.is_directory {
                stack.push((remote_path, path));
            } else {
                tally.bytes += download_file(ctx, agent, &remote_path, &path).await?;
                tally.files += 1;
            }
        }
    }
    Ok(tally)
}

/// Downloads into `target`; a partial file is removed when the transfer fails.
async fn download_file(
    ctx: &Ctx,
    agent: &SandboxClient,
    remote: &str,
    target: &Path,
) -> Result<u64> {
    let mut file = tokio::fs::File::create(target)
        .await
        .with_context(|| format!("cannot create {}", target.display()))?;
    match agent.download(remote, &mut file).await {
        Ok(n) => Ok(n),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(target);
            Err(ctx.fail_agent(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse("sb-1:/workspace/a"),
            Location::Remote {
                id: "sb-1".into(),
                path: "/workspace/a".into()
            }
        );
        assert_eq!(
            parse("sb-1:"),
            Location::Remote {
                id: "sb-1".into(),
                path: ".".into()
            }
        );
        assert_eq!(parse("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(parse("/tmp/x"), Location::Local("/tmp/x".into()));
        assert_eq!(parse("-"), Location::Stdio);
    }

    #[test]
    fn names() {
        assert_eq!(basename("/a/b/"), Some("b"));
        assert_eq!(basename("/"), None);
        assert_eq!(join_remote("/a/", "b"), "/a/b");
    }
}
