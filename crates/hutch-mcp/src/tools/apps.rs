//! Long-running and heavyweight programs: `start_web_app` (a server reached through its preview
//! URL) and `create_manim_animation`.

use std::time::{Duration, Instant};

use hutch_client::{ControlClient, ControlError, Method};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{required, seconds, HutchTools, CALL_MARGIN, QUICK};
use crate::error::{describe_api, finish, ToolError};
use crate::session::Sandbox;

/// Background jobs run at most this long (the agent's own ceiling); the sandbox's timeout ends
/// them sooner.
const APP_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Where app sources are written.
const APP_DIR: &str = "/workspace/apps";
/// Where scenes and their renders go.
const MANIM_DIR: &str = "/workspace/manim";
/// How much of a failed program's output an error message quotes.
const TAIL: usize = 2000;
/// How often a starting app is checked.
const POLL: Duration = Duration::from_millis(250);

/// Input of `start_web_app`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WebAppParams {
    /// `flask`, `streamlit` or `command` (default: `command` when `command` is given, else
    /// `flask`).
    #[serde(default)]
    pub app_type: Option<String>,
    /// The app's source: a Flask module that defines `app` (no `app.run()` needed), or a
    /// Streamlit script.
    #[serde(default)]
    pub code: Option<String>,
    /// For `command`: the shell command that starts a server on the port, which is also in
    /// `$PORT` (e.g. `python3 -m http.server $PORT`).
    #[serde(default)]
    pub command: Option<String>,
    /// The port the app listens on inside the sandbox (default 5000 for Flask, 8501 for
    /// Streamlit, 8000 for a command). Any address works, 127.0.0.1 included.
    #[serde(default)]
    pub port: Option<u16>,
    /// Seconds to wait for the port to accept connections (default 30, at most 300).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    /// Start the app in this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `create_manim_animation`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ManimParams {
    /// Python source defining a manim `Scene` subclass (`from manim import *`).
    pub code: String,
    /// The scene class to render (default: the first class in `code`).
    #[serde(default)]
    pub scene_name: Option<String>,
    /// `low_quality`, `medium_quality` (default), `high_quality`, `production_quality` or
    /// `fourk_quality`.
    #[serde(default)]
    pub quality: Option<String>,
    /// Seconds the render may take (default 300, at most 1800).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Render in this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// What kind of app, and how it is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppKind {
    Flask,
    Streamlit,
    Command,
}

impl AppKind {
    fn parse(value: Option<&str>, has_command: bool) -> Result<Self, ToolError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") if has_command => Ok(AppKind::Command),
            None | Some("") | Some("flask") => Ok(AppKind::Flask),
            Some("streamlit") => Ok(AppKind::Streamlit),
            Some("command" | "shell" | "custom") => Ok(AppKind::Command),
            Some(other) => Err(ToolError::Invalid(format!(
                "unknown app_type {other:?}; use flask, streamlit or command"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            AppKind::Flask => "flask",
            AppKind::Streamlit => "streamlit",
            AppKind::Command => "command",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            AppKind::Flask => 5000,
            AppKind::Streamlit => 8501,
            AppKind::Command => 8000,
        }
    }

    /// The Python module the app needs, checked before starting so a missing one is named.
    fn module(self) -> Option<&'static str> {
        match self {
            AppKind::Flask => Some("flask"),
            AppKind::Streamlit => Some("streamlit"),
            AppKind::Command => None,
        }
    }

    /// The shell command that serves `file` on `port`, on every address of the sandbox.
    fn command_line(self, file: &str, port: u16) -> Option<String> {
        match self {
            AppKind::Flask => Some(format!(
                "exec python3 -m flask --app {file} run --host 0.0.0.0 --port {port}"
            )),
            AppKind::Streamlit => Some(format!(
                "exec python3 -m streamlit run {file} --server.port {port} \
                 --server.address 0.0.0.0 --server.headless true \
                 --browser.gatherUsageStats false"
            )),
            AppKind::Command => None,
        }
    }
}

/// manim's quality flags by the names the seed uses.
const QUALITIES: &[(&str, &str)] = &[
    ("low_quality", "l"),
    ("medium_quality", "m"),
    ("high_quality", "h"),
    ("production_quality", "p"),
    ("fourk_quality", "k"),
];

fn quality_flag(value: Option<&str>) -> Result<&'static str, ToolError> {
    let v = value
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "medium_quality".into());
    QUALITIES
        .iter()
        .find(|(name, flag)| *name == v || *flag == v)
        .map(|(_, flag)| *flag)
        .ok_or_else(|| {
            ToolError::Invalid(format!(
                "unknown quality {v:?}; use low_quality, medium_quality, high_quality, \
                 production_quality or fourk_quality"
            ))
        })
}

/// The scene to render: the one named (a Python identifier), else the first class in `code`.
fn scene_name(given: Option<&str>, code: &str) -> Result<String, ToolError> {
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) {
        return if is_ident(name) {
            Ok(name.to_string())
        } else {
            Err(ToolError::Invalid(format!(
                "scene_name {name:?} is not a Python class name"
            )))
        };
    }
    code.lines()
        .filter_map(|l| l.trim_start().strip_prefix("class "))
        .map(|rest| rest.split(['(', ':']).next().unwrap_or_default().trim())
        .find(|n| is_ident(n))
        .map(str::to_string)
        .ok_or_else(|| {
            ToolError::Invalid("code defines no scene class; give scene_name or define one".into())
        })
}

/// The end of a program's output, for error messages.
fn tail(text: &str) -> &str {
    if text.len() <= TAIL {
        return text;
    }
    let mut start = text.len() - TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Whether something accepts connections on `port` in the sandbox, asked through the server's
/// preview route exactly as a browser would reach it.
enum Probe {
    /// Nothing listens (yet).
    Closed,
    /// Something answered (the status it answered with, if it spoke HTTP in time).
    Open(Option<u16>),
}

#[tool_router(router = app_tools, vis = "pub(super)")]
impl HutchTools {
    /// Starts a web app in the background and returns its URL.
    #[tool(
        description = "Start a web app in the sandbox in the background: a Flask app or a \
            Streamlit script from code, or any server command. Waits until its port accepts \
            connections and returns url, the preview URL that reaches it from outside the \
            sandbox (no API key needed), plus process_id and the port. The app keeps running \
            until the sandbox ends."
    )]
    pub async fn start_web_app(
        &self,
        Parameters(p): Parameters<WebAppParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_start_web_app(p).await)
    }

    /// Renders a manim scene to a video.
    #[tool(
        description = "Render a manim (mathematical animation) scene to an MP4 video in the \
            sandbox and return it as an artifact (path, size). Needs manim in the sandbox's \
            template; without it the call fails and says so."
    )]
    pub async fn create_manim_animation(
        &self,
        Parameters(p): Parameters<ManimParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_manim(p).await)
    }
}

impl HutchTools {
    async fn run_start_web_app(&self, p: WebAppParams) -> Result<Value, ToolError> {
        let command = p
            .command
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let kind = AppKind::parse(p.app_type.as_deref(), command.is_some())?;
        let code = p.code.as_deref().filter(|c| !c.trim().is_empty());
        match (kind, code, command) {
            (AppKind::Command, _, None) => {
                return Err(ToolError::Invalid(
                    "app_type command needs `command`, the shell command that starts the server"
                        .into(),
                ))
            }
            (AppKind::Flask | AppKind::Streamlit, None, _) => {
                return Err(ToolError::Invalid(format!(
                    "app_type {} needs `code`, the app's source",
                    kind.name()
                )))
            }
            (AppKind::Flask | AppKind::Streamlit, Some(_), Some(_)) => {
                return Err(ToolError::Invalid(format!(
                    "app_type {} takes `code`, not `command`",
                    kind.name()
                )))
            }
            _ => {}
        }
        let port = match p.port {
            Some(0) => return Err(ToolError::Invalid("port must be 1-65535".into())),
            Some(port) => port,
            None => kind.default_port(),
        };
        let wait = seconds(p.wait_seconds, 30, 300, "wait_seconds")?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;

        if let Probe::Open(_) = self.probe(&sandbox, port).await? {
            return Err(ToolError::Sandbox(format!(
                "port {port} is already in use in sandbox {}; pick another port",
                sandbox.id
            )));
        }
        if let Some(module) = kind.module() {
            self.require_module(&sandbox, module).await?;
        }
        let (line, file) = match (kind.command_line("", 0), code, command) {
            (Some(_), Some(code), _) => {
                let file = format!("{APP_DIR}/{}_{port}.py", kind.name());
                let body = json!({ "path": file, "content": code });
                self.session
                    .call(&sandbox, Method::POST, "/files/write", Some(&body), QUICK)
                    .await
                    .map_err(|e| ToolError::sandbox(&format!("cannot write {file}"), e))?;
                (
                    kind.command_line(&file, port).unwrap_or_default(),
                    Some(file),
                )
            }
            (_, _, Some(command)) => (command.to_string(), None),
            _ => return Err(ToolError::Invalid("nothing to start".into())),
        };
        let body = json!({
            "command": "/bin/sh",
            "args": ["-c", line],
            "name": format!("web-app-{port}"),
            "timeout": APP_LIFETIME.as_secs(),
            "env": { "PORT": port.to_string() },
            "workdir": if file.is_some() { APP_DIR } else { "/workspace" },
        });
        let started = Instant::now();
        let job = self
            .session
            .call(
                &sandbox,
                Method::POST,
                "/commands/background",
                Some(&body),
                QUICK,
            )
            .await
            .map_err(|e| ToolError::sandbox("cannot start the app", e))?;
        let Some(process_id) = job["process_id"].as_str().map(str::to_string) else {
            return Err(ToolError::Sandbox(format!(
                "the agent started the app but sent no process id: {job}"
            )));
        };

        let deadline = started + wait;
        loop {
            if let Probe::Open(status) = self.probe(&sandbox, port).await? {
                return Ok(json!({
                    "url": sandbox.preview(self.session.server_url(), port),
                    "port": port,
                    "app_type": kind.name(),
                    "process_id": process_id,
                    "status_code": status,
                    "app_file": file,
                    "startup_seconds": started.elapsed().as_secs_f64(),
                    "sandbox_id": sandbox.id,
                }));
            }
            let job = self
                .session
                .call(
                    &sandbox,
                    Method::GET,
                    &format!("/execute/processes/{process_id}"),
                    None,
                    QUICK,
                )
                .await
                .map_err(|e| ToolError::sandbox("cannot follow the app's process", e))?;
            if job["status"].as_str() != Some("running") {
                return Err(ToolError::Sandbox(format!(
                    "the app exited ({}, exit code {}) before listening on port {port}.\n\
                     stderr:\n{}\nstdout:\n{}",
                    job["status"].as_str().unwrap_or("unknown"),
                    job["exit_code"],
                    tail(job["stderr"].as_str().unwrap_or_default()),
                    tail(job["stdout"].as_str().unwrap_or_default()),
                )));
            }
            if Instant::now() >= deadline {
                let _ = self
                    .session
                    .call(
                        &sandbox,
                        Method::POST,
                        &format!("/execute/kill/{process_id}"),
                        None,
                        QUICK,
                    )
                    .await;
                return Err(ToolError::Sandbox(format!(
                    "the app did not listen on port {port} within {} s and was stopped.\n\
                     stderr:\n{}\nstdout:\n{}",
                    wait.as_secs(),
                    tail(job["stderr"].as_str().unwrap_or_default()),
                    tail(job["stdout"].as_str().unwrap_or_default()),
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asks the server's preview route for `port`. No API key is sent: the request reaches the
    /// user's app, headers and all, and preview URLs need none.
    async fn probe(&self, sandbox: &Sandbox, port: u16) -> Result<Probe, ToolError> {
        let client = ControlClient::new(self.session.server_url(), None)
            .map_err(|e| ToolError::sandbox("bad server URL", e))?
            .with_timeout(Duration::from_secs(5));
        let server_port = client
            .authority()
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| "80".into());
        let host = format!("{port}-{}.localhost:{server_port}", sandbox.id);
        // The server prefixes nothing to preview paths: "/" of the app, not of the server.
        match client
            .send(Method::GET, "/", None, &[("host", host.as_str())])
            .await
        {
            Ok(r) => {
                // hutch's own answers have the control-plane error shape; the app's may be
                // anything, so only that shape is taken as hutch speaking.
                let body = r.json();
                let hutch = body["error"]["code"]
                    .as_str()
                    .filter(|_| body["error"]["request_id"].is_string());
                match (r.status.as_u16(), hutch) {
                    (502, Some("PORT_NOT_LISTENING")) => Ok(Probe::Closed),
                    (404, Some("RESOURCE_NOT_FOUND"))
                    | (409, Some("SANDBOX_PAUSED" | "SANDBOX_STOPPED" | "SANDBOX_NOT_READY")) => {
                        Err(ToolError::Sandbox(format!(
                            "sandbox {} cannot serve port {port}: {}",
                            sandbox.id,
                            describe_api(&hutch_client::ApiError::from_reply(r.status, &r.body))
                        )))
                    }
                    (status, _) => Ok(Probe::Open(Some(status))),
                }
            }
            // Connected, and the app is slow to answer: it is listening.
            Err(ControlError::Timeout(_)) => Ok(Probe::Open(None)),
            Err(e) => Err(ToolError::sandbox("cannot reach the hutch server", e)),
        }
    }

    /// Fails with a clear message when `module` cannot be imported in the sandbox.
    async fn require_module(&self, sandbox: &Sandbox, module: &str) -> Result<(), ToolError> {
        let body = json!({
            "command": "python3",
            "args": ["-c", format!("import {module}")],
            "timeout": 60,
        });
        let reply = self
            .session
            .call(
                &sandbox.clone(),
                Method::POST,
                "/commands/run",
                Some(&body),
                QUICK,
            )
            .await
            .map_err(|e| ToolError::sandbox(&format!("cannot check for {module}"), e))?;
        if reply["exit_code"].as_i64() == Some(0) {
            return Ok(());
        }
        Err(ToolError::Sandbox(format!(
            "{module} is not installed in sandbox {}: install it first (shell_execute \
             `pip install {module}`) or use a template that includes it",
            sandbox.id
        )))
    }

    async fn run_manim(&self, p: ManimParams) -> Result<Value, ToolError> {
        required(&p.code, "code")?;
        let scene = scene_name(p.scene_name.as_deref(), &p.code)?;
        let flag = quality_flag(p.quality.as_deref())?;
        let timeout = seconds(p.timeout, 300, 1800, "timeout")?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;

        let check = json!({
            "command": "/bin/sh",
            "args": ["-c", "command -v manim"],
            "timeout": 30,
        });
        let found = self
            .session
            .call(&sandbox, Method::POST, "/commands/run", Some(&check), QUICK)
            .await
            .map_err(|e| ToolError::sandbox("cannot look for manim", e))?;
        if found["exit_code"].as_i64() != Some(0) {
            let template = self
                .session
                .api()
                .get_sandbox(&sandbox.id)
                .await
                .ok()
                .and_then(|s| s.template_name.clone())
                .unwrap_or_else(|| "unknown".into());
            return Err(ToolError::Unavailable {
                message: format!(
                    "manim is not installed in this sandbox's template ({template}), so \
                     create_manim_animation cannot render. Use a template that includes manim \
                     (pip package `manim` with its system libraries: cairo, pango, ffmpeg), or \
                     pass the sandbox_id of a sandbox that has it"
                ),
                data: json!({ "sandbox_id": sandbox.id, "template": template, "missing": "manim" }),
            });
        }

        let file = format!("{MANIM_DIR}/{scene}.py");
        let write = json!({ "path": file, "content": p.code });
        self.session
            .call(&sandbox, Method::POST, "/files/write", Some(&write), QUICK)
            .await
            .map_err(|e| ToolError::sandbox(&format!("cannot write {file}"), e))?;
        let media = format!("{MANIM_DIR}/media");
        let script = format!(
            "set -e\ncd {MANIM_DIR}\nmanim render -q{flag} --media_dir {media} {file} {scene}\n\
             find {media}/videos -name '{scene}.mp4' -newer {file} -print | head -n 1 >&2"
        );
        let run = json!({
            "code": script,
            "language": "bash",
            "timeout": timeout.as_secs(),
            "capture_artifacts": true,
        });
        let reply = self
            .session
            .call(
                &sandbox,
                Method::POST,
                "/execute",
                Some(&run),
                timeout + CALL_MARGIN,
            )
            .await
            .map_err(|e| ToolError::sandbox("the render failed", e))?;
        let stderr = reply["stderr"].as_str().unwrap_or_default();
        if reply["success"].as_bool() != Some(true) {
            return Err(ToolError::Sandbox(format!(
                "manim failed (exit code {}):\n{}",
                reply["exit_code"],
                tail(stderr)
            )));
        }
        let artifacts = reply.get("artifacts").cloned().unwrap_or_else(|| json!([]));
        let video = artifacts
            .as_array()
            .and_then(|a| {
                a.iter().find(|x| {
                    x["category"] == "videos"
                        || x["path"].as_str().is_some_and(|p| p.ends_with(".mp4"))
                })
            })
            .cloned();
        let path = video
            .as_ref()
            .and_then(|v| v["path"].as_str().map(str::to_string))
            .or_else(|| {
                stderr
                    .lines()
                    .rev()
                    .find(|l| l.trim().ends_with(".mp4"))
                    .map(|l| l.trim().to_string())
            });
        let Some(path) = path else {
            return Err(ToolError::Sandbox(format!(
                "manim finished but no {scene}.mp4 was found under {media}:\n{}",
                tail(stderr)
            )));
        };
        Ok(json!({
            "success": true,
            "scene": scene,
            "video_path": path,
            "artifact": video,
            "artifacts": artifacts,
            "stdout": tail(reply["stdout"].as_str().unwrap_or_default()),
            "sandbox_id": sandbox.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_kinds() {
        assert_eq!(AppKind::parse(None, false).unwrap(), AppKind::Flask);
        assert_eq!(AppKind::parse(None, true).unwrap(), AppKind::Command);
        assert_eq!(
            AppKind::parse(Some("Streamlit"), false).unwrap(),
            AppKind::Streamlit
        );
        assert!(AppKind::parse(Some("django"), false).is_err());
        assert_eq!(AppKind::Flask.default_port(), 5000);
        let line = AppKind::Flask.command_line("/w/a.py", 5001).unwrap();
        assert!(line.contains("--app /w/a.py") && line.contains("--port 5001"));
        assert!(AppKind::Command.command_line("x", 1).is_none());
    }

    #[test]
    fn manim_inputs() {
        assert_eq!(quality_flag(None).unwrap(), "m");
        assert_eq!(quality_flag(Some("low_quality")).unwrap(), "l");
        assert!(quality_flag(Some("ultra")).is_err());
        let code = "from manim import *\n\nclass Intro(Scene):\n    def construct(self): pass\n";
        assert_eq!(scene_name(None, code).unwrap(), "Intro");
        assert_eq!(scene_name(Some("Other"), code).unwrap(), "Other");
        assert!(scene_name(Some("a b"), code).is_err());
        assert!(scene_name(None, "x = 1").is_err());
    }

    #[test]
    fn tails_cut_on_char_boundaries() {
        let long = "é".repeat(TAIL);
        let t = tail(&long);
        assert!(t.len() <= TAIL && t.chars().all(|c| c == 'é'));
        assert_eq!(tail("short"), "short");
    }
}
