//! `hutch run`: run code and print what it prints, as a terminal user expects.
//!
//! Output streams over `/execute/stream` as the code produces it: its stdout to stdout, its
//! stderr to stderr. Rich outputs (figures, images, HTML) are saved as `output-N.<ext>` and
//! named on stderr; a final expression's plain value is printed, like a REPL. The exit status
//! is the program's (124 for a timeout, like `timeout(1)`). Without `--sandbox` the run gets a
//! sandbox of its own, deleted afterwards whatever happens — an error, Ctrl-C, SIGTERM.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use hutch_client::api::Object;
use hutch_client::sandbox::{ExecEvent, ExecuteRequest};
use hutch_client::{CreateSandbox, Sandbox, SandboxClient};
use serde_json::{Map, Value};

use super::client::{block_on, env_map, interrupted, Ctx};
use super::output::print_json;
use crate::cli::RunArgs;

/// Extra life of a throw-away sandbox beyond the run's own timeout: if hutch itself dies
/// before it can delete it, the server's reaper still does.
const TEMP_GRACE: i64 = 120;

pub fn run(args: RunArgs) -> Result<i32> {
    let ctx = Ctx::new(&args.client)?;
    let (code, from_file) = read_code(&args)?;
    let language = match &args.lang {
        Some(l) => normalize_language(l),
        None => from_file
            .as_deref()
            .and_then(|f| guess_language(f, &code))
            .unwrap_or("python")
            .to_string(),
    };
    let req = ExecuteRequest {
        code,
        language,
        timeout: args.timeout.max(1),
        workdir: args.workdir.clone(),
        env: env_map(&args.env),
    };
    block_on(async {
        match &args.sandbox {
            Some(id) => {
                let agent = ctx.agent(id).await?;
                tokio::select! {
                    r = execute(&ctx, &agent, &req, &args.out_dir) => r,
                    code = interrupted() => Ok(code),
                }
            }
            None => with_temp_sandbox(&ctx, &args, &req).await,
        }
    })?
}

/// The code and, when it came from a file, the file's path.
fn read_code(args: &RunArgs) -> Result<(String, Option<PathBuf>)> {
    match (&args.file, args.code.as_deref()) {
        (Some(f), _) if f.as_os_str() == "-" => Ok((read_stdin()?, None)),
        (Some(f), _) => {
            let code = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            Ok((code, Some(f.clone())))
        }
        (None, Some("-")) => Ok((read_stdin()?, None)),
        (None, Some(c)) => Ok((c.to_string(), None)),
        (None, None) => anyhow::bail!("give the code, -f FILE, or - to read standard input"),
    }
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the code from standard input")?;
    Ok(s)
}

/// The agent's name for a language the user typed.
fn normalize_language(l: &str) -> String {
    match l.to_ascii_lowercase().as_str() {
        "py" | "python" | "python3" => "python".into(),
        "js" | "javascript" | "node" | "nodejs" => "javascript".into(),
        "sh" | "bash" | "shell" => "bash".into(),
        "go" | "golang" => "go".into(),
        other => other.to_string(),
    }
}

/// The language of a file, from its extension or its `#!` line.
fn guess_language(path: &Path, code: &str) -> Option<&'static str> {
    let by_ext = match path.extension().and_then(|e| e.to_str()) {
        Some("py") => Some("python"),
        Some("js" | "mjs" | "cjs") => Some("javascript"),
        Some("sh" | "bash") => Some("bash"),
        Some("go") => Some("go"),
        _ => None,
    };
    by_ext.or_else(|| {
        let first = code.lines().next()?.strip_prefix("#!")?;
        if first.contains("python") {
            Some("python")
        } else if first.contains("node") {
            Some("javascript")
        } else if first.contains("bash") || first.trim_end().ends_with("/sh") {
            Some("bash")
        } else {
            None
        }
    })
}

async fn with_temp_sandbox(ctx: &Ctx, args: &RunArgs, req: &ExecuteRequest) -> Result<i32> {
    let create = CreateSandbox {
        template_name: Some(args.template.clone()),
        timeout_seconds: Some(req.timeout as i64 + TEMP_GRACE).filter(|_| !args.keep),
        internet_access: None,
        env_vars: None,
    };
    // Ctrl-C while the sandbox is being created: let the create finish, then delete it.
    let creating = ctx.api.create_sandbox(&create);
    tokio::pin!(creating);
    let (created, stop) = tokio::select! {
        r = &mut creating => (r, None),
        code = interrupted() => (creating.await, Some(code)),
    };
    let sandbox = created.map_err(|e| ctx.fail(e))?;
    if let Some(code) = stop {
        remove(ctx, &sandbox.id).await;
        return Ok(code);
    }
    let result = tokio::select! {
        r = run_in(ctx, &sandbox, req, &args.out_dir) => r,
        code = interrupted() => Ok(code),
    };
    if args.keep {
        eprintln!("hutch: kept sandbox {}", sandbox.id);
    } else {
        remove(ctx, &sandbox.id).await;
    }
    result
}

async fn run_in(
    ctx: &Ctx,
    sandbox: &Object<Sandbox>,
    req: &ExecuteRequest,
    out_dir: &Path,
) -> Result<i32> {
    let token = match &sandbox.auth_token {
        Some(t) => t.clone(),
        None => ctx
            .api
            .refresh_token(&sandbox.id)
            .await
            .map_err(|e| ctx.fail(e))?,
    };
    let agent = ctx.agent_for(sandbox, &token)?;
    execute(ctx, &agent, req, out_dir).await
}

/// Deletes a throw-away sandbox; a failure is reported, not fatal (the reaper gets it later).
async fn remove(ctx: &Ctx, id: &str) {
    if let Err(e) = ctx.api.delete_sandbox(id).await {
        eprintln!(
            "hutch: could not delete the temporary sandbox {id}: {:#}",
            ctx.fail(e)
        );
    }
}

async fn execute(
    ctx: &Ctx,
    agent: &SandboxClient,
    req: &ExecuteRequest,
    out_dir: &Path,
) -> Result<i32> {
    let agent = agent
        .clone()
        .with_timeout(Duration::from_secs(req.timeout + 30));
    if ctx.json {
        let v = agent.execute(req).await.map_err(|e| ctx.fail_agent(e))?;
        print_json(&v);
        return Ok(exit_code(&v));
    }
    let mut stream = agent
        .execute_stream(req)
        .await
        .map_err(|e| ctx.fail_agent(e))?;
    let mut saver = Saver::new(out_dir);
    let mut result: Option<Value> = None;
    let mut error: Option<Value> = None;
    let mut wrote_stderr = false;
    while let Some(event) = stream.next().await {
        match event.map_err(|e| ctx.fail_agent(e))? {
            ExecEvent::Stdout(t) => write_out(&mut std::io::stdout(), &t),
            ExecEvent::Stderr(t) => {
                wrote_stderr = true;
                write_out(&mut std::io::stderr(), &t);
            }
            ExecEvent::Display { kind, data } => saver.output(&kind, &data)?,
            ExecEvent::Result(v) => result = Some(v),
            ExecEvent::Error(v) => error = Some(v),
            ExecEvent::Complete(_) => break,
        }
    }
    stream.close().await;
    let Some(result) = result else {
        // No result: the request itself failed (bad language, …) or the stream was cut.
        return match error {
            Some(e) => Err(anyhow::anyhow!("{}", error_text(&e))),
            None => Err(anyhow::anyhow!(
                "the sandbox closed the output stream before the run ended"
            )),
        };
    };
    let code = exit_code(&result);
    let status = result["status"].as_str().unwrap_or("");
    if status == "timed_out" || status == "cancelled" {
        // The agent usually says so on stderr itself.
        if !wrote_stderr {
            eprintln!("hutch: timed out after {} s", req.timeout);
        }
    } else if status == "kernel_died" {
        eprintln!("hutch: the interpreter died while running the code");
    }
    if let Some(e) = &error {
        // A traceback is already on stderr; say why only when nothing was printed there.
        if !wrote_stderr && status == "finished" {
            eprintln!("{}", error_text(e));
        }
    }
    if result["kernel_restarted"].as_bool() == Some(true) {
        eprintln!("hutch: note: the interpreter was restarted; its variables and imports are gone");
    }
    if let Some(n) = result["outputs_omitted"].as_u64().filter(|n| *n > 0) {
        eprintln!("hutch: {n} output(s) too large to stream were left out; `--json` returns them");
    }
    Ok(code)
}

fn write_out(w: &mut impl Write, text: &str) {
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}

fn exit_code(v: &Value) -> i32 {
    if v["timed_out"].as_bool() == Some(true) {
        return 124;
    }
    v["exit_code"]
        .as_i64()
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(if v["success"].as_bool() == Some(false) {
            1
        } else {
            0
        })
}

fn error_text(e: &Value) -> String {
    let msg = e["message"]
        .as_str()
        .or(e["error"].as_str())
        .unwrap_or("the run failed");
    match e["code"].as_str() {
        Some(c) if !c.is_empty() => format!("{msg} ({c})"),
        _ => msg.to_string(),
    }
}

/// Saves rich outputs as `output-N.<ext>` (never overwriting a file) and prints plain ones.
struct Saver {
    dir: PathBuf,
    next: usize,
}

impl Saver {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            next: 1,
        }
    }

    /// Handles one MIME bundle: an image (PNG, JPEG, SVG) or HTML without a useful text form
    /// is saved; otherwise its text (or JSON, Markdown) is printed to stdout.
    fn output(&mut self, kind: &str, data: &Map<String, Value>) -> Result<()> {
        let text = data.get("text/plain").and_then(Value::as_str);
        for (mime, ext, base64) in [
            ("image/png", "png", true),
            ("image/jpeg", "jpg", true),
            ("image/svg+xml", "svg", false),
        ] {
            if let Some(v) = data.get(mime) {
                return self.save(mime, ext, v, base64);
            }
        }
        // `<IPython.core.display.HTML object>` says nothing; a DataFrame's text form does.
        let useless_text = text.is_none_or(|t| t.starts_with('<') && t.ends_with(" object>"));
        if useless_text {
            if let Some(v) = data.get("text/html") {
                return self.save("text/html", "html", v, false);
            }
        }
        let printable = text
            .map(str::to_string)
            .or_else(|| {
                data.get("text/markdown")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or_else(|| {
                data.get("application/json")
                    .and_then(|v| serde_json::to_string_pretty(v).ok())
            })
            .or_else(|| {
                data.get("text/latex")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        match printable {
            Some(t) => {
                let mut out = std::io::stdout();
                write_out(&mut out, &t);
                if !t.ends_with('\n') {
                    write_out(&mut out, "\n");
                }
                Ok(())
            }
            None => {
                if kind == "display" {
                    let types: Vec<&str> = data.keys().map(String::as_str).collect();
                    eprintln!("hutch: output of type {} not shown", types.join(", "));
                }
                Ok(())
            }
        }
    }

    fn save(&mut self, mime: &str, ext: &str, v: &Value, base64: bool) -> Result<()> {
        let bytes = match (v.as_str(), base64) {
            (Some(s), true) => base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .with_context(|| format!("the {mime} output is not valid base64"))?,
            (Some(s), false) => s.as_bytes().to_vec(),
            (None, _) => serde_json::to_vec(v)?,
        };
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        loop {
            let path = self.dir.join(format!("output-{}.{ext}", self.next));
            self.next += 1;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(&bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("hutch: saved {mime} output to {}", path.display());
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        assert_eq!(normalize_language("JS"), "javascript");
        assert_eq!(normalize_language("node"), "javascript");
        assert_eq!(normalize_language("py"), "python");
        assert_eq!(guess_language(Path::new("a.go"), ""), Some("go"));
        assert_eq!(guess_language(Path::new("a.mjs"), ""), Some("javascript"));
        assert_eq!(
            guess_language(Path::new("script"), "#!/usr/bin/env bash\necho"),
            Some("bash")
        );
        assert_eq!(
            guess_language(Path::new("s"), "#!/usr/bin/python3\n"),
            Some("python")
        );
        assert_eq!(guess_language(Path::new("notes.txt"), "hello"), None);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&serde_json::json!({"exit_code": 3})), 3);
        assert_eq!(
            exit_code(&serde_json::json!({"timed_out": true, "exit_code": 0})),
            124
        );
        assert_eq!(exit_code(&serde_json::json!({"success": false})), 1);
        assert_eq!(exit_code(&serde_json::json!({})), 0);
    }

    #[test]
    fn images_are_saved_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("output-1.png"), b"keep").unwrap();
        let mut s = Saver::new(dir.path());
        let mut data = Map::new();
        data.insert("image/png".into(), Value::String("iVBORw0KGgo=".into()));
        data.insert("text/plain".into(), Value::String("<Figure>".into()));
        s.output("display", &data).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("output-1.png")).unwrap(),
            b"keep"
        );
        let png = std::fs::read(dir.path().join("output-2.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
    }
}
