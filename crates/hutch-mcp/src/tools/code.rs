//! Running code and commands: `execute`, `shell_execute`, `get_execution_info`.

use hutch_client::Method;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{required, seconds, HutchTools, CALL_MARGIN, QUICK};
use crate::error::{finish, ToolError};

/// Languages `execute` runs, with the names the agent also accepts for them.
const LANGUAGES: &[(&str, &[&str])] = &[
    ("python", &["python", "python3", "py"]),
    ("javascript", &["javascript", "js", "node", "nodejs"]),
    ("bash", &["bash", "sh", "shell"]),
    ("go", &["go", "golang"]),
];

/// Input of `execute`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteParams {
    /// The code to run. Python keeps its variables between calls (one interpreter per
    /// sandbox); the value of a final expression is returned as `result`.
    pub code: String,
    /// `python` (default), `javascript`, `bash` or `go`.
    #[serde(default)]
    pub language: Option<String>,
    /// Seconds before the run is stopped (default 60, at most 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Run in this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `shell_execute`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShellParams {
    /// A bash command line (pipes, redirections and `&&` work).
    pub command: String,
    /// Directory to run in (default `/workspace`).
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Seconds before the command is killed (default 30, at most 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Run in this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `get_execution_info`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InfoParams {
    /// How many recent executions to include (default 10, at most 100).
    #[serde(default)]
    pub history_limit: Option<u32>,
    /// Describe this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// The agent's name for `language`, or an error listing what is accepted.
fn language(value: Option<&str>) -> Result<&'static str, ToolError> {
    let given = value.map(str::trim).filter(|v| !v.is_empty());
    let Some(given) = given else {
        return Ok("python");
    };
    let lower = given.to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(_, names)| names.contains(&lower.as_str()))
        .map(|(name, _)| *name)
        .ok_or_else(|| {
            ToolError::Invalid(format!(
                "unknown language {given:?}; use python, javascript, bash or go"
            ))
        })
}

/// The fields of the agent's execute reply the tool returns, plus the artifacts. A Python
/// exception's text is `error`; the full traceback stays in `stderr`.
fn execution_result(sandbox_id: &str, reply: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "success",
        "stdout",
        "stderr",
        "result",
        "error",
        "execution_time",
        "exit_code",
        "timed_out",
        "execution_id",
    ] {
        out.insert(key.into(), reply.get(key).cloned().unwrap_or(Value::Null));
    }
    if !out["success"].is_boolean() {
        out.insert("success".into(), json!(false));
    }
    out.insert(
        "artifacts".into(),
        reply.get("artifacts").cloned().unwrap_or_else(|| json!([])),
    );
    out.insert("sandbox_id".into(), json!(sandbox_id));
    Value::Object(out)
}

#[tool_router(router = code_tools, vis = "pub(super)")]
impl HutchTools {
    /// Runs code in the sandbox and returns its output and the artifacts it made.
    #[tool(
        description = "Execute code (Python by default; also javascript, bash, go) in the \
            sandbox. Returns stdout, stderr, result (the value of a final Python expression), \
            success, error, execution_time, and artifacts: files the run produced, such as \
            matplotlib figures (plt.show() or figures left open) and files written under \
            /workspace, each with id, name, path, type and size. Python variables, files and \
            installed packages persist between calls."
    )]
    pub async fn execute(
        &self,
        Parameters(p): Parameters<ExecuteParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_execute(p).await)
    }

    /// Runs a shell command to completion.
    #[tool(
        description = "Run a shell command line with bash in the sandbox (pipes, redirections \
            and && work) and wait for it. Returns stdout, stderr, exit_code, success, \
            execution_time and timed_out. A command that exits non-zero is reported, not an \
            error."
    )]
    pub async fn shell_execute(
        &self,
        Parameters(p): Parameters<ShellParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_shell(p).await)
    }

    /// Describes the sandbox and its recent executions.
    #[tool(
        description = "Describe the execution environment: the sandbox's id, template, status, \
            resources (vCPUs, memory, disk), expiry and preview URL pattern; execution \
            statistics (counts, cache hits, average time); and the most recent executions."
    )]
    pub async fn get_execution_info(
        &self,
        Parameters(p): Parameters<InfoParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_info(p).await)
    }
}

impl HutchTools {
    async fn run_execute(&self, p: ExecuteParams) -> Result<Value, ToolError> {
        required(&p.code, "code")?;
        let language = language(p.language.as_deref())?;
        let timeout = seconds(p.timeout, 60, 3600, "timeout")?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let body = json!({
            "code": p.code,
            "language": language,
            "timeout": timeout.as_secs(),
            "capture_artifacts": true,
        });
        let reply = match self
            .session
            .call(
                &sandbox,
                Method::POST,
                "/execute",
                Some(&body),
                timeout + CALL_MARGIN,
            )
            .await
        {
            Ok(v) => v,
            Err(e) => timed_out_reply(e).map_err(|e| ToolError::sandbox("execution failed", e))?,
        };
        Ok(execution_result(&sandbox.id, &reply))
    }

    async fn run_shell(&self, p: ShellParams) -> Result<Value, ToolError> {
        required(&p.command, "command")?;
        let timeout = seconds(p.timeout, 30, 3600, "timeout")?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let mut body = json!({
            "command": "bash",
            "args": ["-c", p.command],
            "timeout": timeout.as_secs(),
        });
        if let Some(dir) = p.working_directory.filter(|d| !d.trim().is_empty()) {
            body["workdir"] = json!(dir);
        }
        let reply = match self
            .session
            .call(
                &sandbox,
                Method::POST,
                "/commands/run",
                Some(&body),
                timeout + CALL_MARGIN,
            )
            .await
        {
            Ok(v) => v,
            Err(e) => timed_out_reply(e).map_err(|e| ToolError::sandbox("command failed", e))?,
        };
        let timed_out = reply["timed_out"].as_bool().unwrap_or(false);
        Ok(json!({
            "stdout": reply["stdout"],
            "stderr": reply["stderr"],
            "exit_code": reply["exit_code"],
            "success": reply["success"].as_bool().unwrap_or(false) && !timed_out,
            "execution_time": reply["execution_time"],
            "timed_out": timed_out,
            "sandbox_id": sandbox.id,
        }))
    }

    async fn run_info(&self, p: InfoParams) -> Result<Value, ToolError> {
        let limit = match p.history_limit {
            None => 10,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return Err(ToolError::Invalid(format!(
                    "history_limit must be between 1 and 100, got {n}"
                )))
            }
        };
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let record = self.session.api().get_sandbox(&sandbox.id).await?;
        let stats = self
            .session
            .call(&sandbox, Method::GET, "/execute/stats", None, QUICK)
            .await
            .map_err(|e| ToolError::sandbox("cannot read execution statistics", e))?;
        let history = self
            .session
            .call(
                &sandbox,
                Method::GET,
                &format!("/execute/history?limit={limit}"),
                None,
                QUICK,
            )
            .await
            .map_err(|e| ToolError::sandbox("cannot read the execution history", e))?;
        let (session_sandbox, owned) = self.session.ownership(&sandbox.id).await;
        let raw = &record.raw;
        Ok(json!({
            "sandbox_id": sandbox.id,
            "template": raw["template_name"],
            "status": raw["status"],
            "resources": raw["resources"],
            "internet_access": raw["internet_access"],
            "created_at": raw["created_at"],
            "expires_at": raw["expires_at"],
            "preview_url": raw["preview_url"],
            "session_sandbox": session_sandbox,
            "owned_by_session": owned,
            "stats": stats,
            "history": history["history"],
        }))
    }
}

/// A run that hit its timeout is answered 408 with the output so far in `details`; that is a
/// result (`timed_out: true`), not a failure of the sandbox.
fn timed_out_reply(e: hutch_client::SandboxError) -> Result<Value, hutch_client::SandboxError> {
    use hutch_client::{ApiError, SandboxError, StatusCode};
    match e {
        SandboxError::Api(ApiError::Server {
            status: StatusCode::REQUEST_TIMEOUT,
            ref body,
            ref message,
            ..
        }) => {
            let details = body
                .get("details")
                .filter(|d| d.is_object())
                .or_else(|| body.get("error").and_then(|e| e.get("details")))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let mut v = details;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("timed_out".into(), json!(true));
                obj.insert("success".into(), json!(false));
                obj.entry("error").or_insert(json!(message));
            }
            Ok(v)
        }
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        assert_eq!(language(None).unwrap(), "python");
        assert_eq!(language(Some(" ")).unwrap(), "python");
        assert_eq!(language(Some("JS")).unwrap(), "javascript");
        assert_eq!(language(Some("sh")).unwrap(), "bash");
        let e = language(Some("cobol")).unwrap_err();
        assert!(e.to_string().contains("python, javascript, bash or go"));
    }

    #[test]
    fn results_keep_the_contract_fields() {
        let v = execution_result(
            "sb",
            &json!({"success": true, "stdout": "hi\n", "stderr": "", "result": "2",
                    "execution_time": 0.1, "exit_code": 0, "extra": 1}),
        );
        assert_eq!(v["stdout"], "hi\n");
        assert_eq!(v["result"], "2");
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["artifacts"], json!([]));
        assert_eq!(v["sandbox_id"], "sb");
        assert!(v.get("extra").is_none());
    }
}
