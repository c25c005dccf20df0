//! Sandbox lifecycle: `sandbox_create`, `sandbox_list`, `sandbox_kill`.

use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{required, seconds, HutchTools};
use crate::error::{finish, ToolError};

/// Input of `sandbox_create`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateParams {
    /// Template name (default: the server's configured one, `code-interpreter`).
    #[serde(default)]
    pub template: Option<String>,
    /// Seconds until hutch deletes the sandbox (default 3600, at most 86400).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Keep the sandbox after this MCP session ends (default false: it is deleted with the
    /// session, like the session's own sandbox).
    #[serde(default)]
    pub keep_after_session: bool,
}

/// Input of `sandbox_list` (none).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListParams {}

/// Input of `sandbox_kill`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct KillParams {
    /// The sandbox to delete.
    pub sandbox_id: String,
}

#[tool_router(router = sandbox_tools, vis = "pub(super)")]
impl HutchTools {
    /// Creates an extra sandbox.
    #[tool(
        description = "Create a new sandbox (besides this session's own) and return its \
            sandbox_id, to pass to the other tools. It is deleted when the session ends unless \
            keep_after_session is true, and in any case after timeout seconds."
    )]
    pub async fn sandbox_create(
        &self,
        Parameters(p): Parameters<CreateParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_create(p).await)
    }

    /// Lists sandboxes.
    #[tool(
        description = "List the sandboxes on the hutch server: id, status, template, created_at, \
            expires_at, and whether each is this session's own or was created by it."
    )]
    pub async fn sandbox_list(
        &self,
        Parameters(_): Parameters<ListParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_list().await)
    }

    /// Deletes a sandbox.
    #[tool(
        description = "Delete a sandbox and everything in it. Deleting this session's own \
            sandbox is allowed: the next tool call gets a fresh one."
    )]
    pub async fn sandbox_kill(
        &self,
        Parameters(p): Parameters<KillParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_kill(p).await)
    }
}

impl HutchTools {
    async fn run_create(&self, p: CreateParams) -> Result<Value, ToolError> {
        let template = match p.template.as_deref().map(str::trim) {
            Some("") => return Err(ToolError::Invalid("template must not be empty".into())),
            Some(t) => t.to_string(),
            None => self.session.default_template().to_string(),
        };
        let timeout: Duration = seconds(p.timeout, 3600, 86_400, "timeout")?;
        let (sandbox, raw) = self
            .session
            .create(&template, Some(timeout), p.keep_after_session)
            .await?;
        Ok(json!({
            "sandbox_id": sandbox.id,
            "status": raw["status"],
            "template": raw["template_name"],
            "expires_at": raw["expires_at"],
            "preview_url": raw["preview_url"],
            "deleted_with_session": !p.keep_after_session,
        }))
    }

    async fn run_list(&self) -> Result<Value, ToolError> {
        let all = self.session.api().list_sandboxes(None).await?;
        let mut out = Vec::with_capacity(all.len());
        for s in all {
            let (session_sandbox, owned) = self.session.ownership(&s.id).await;
            out.push(json!({
                "sandbox_id": s.id,
                "status": s.status,
                "template": s.template_name,
                "created_at": s.created_at,
                "expires_at": s.expires_at,
                "session_sandbox": session_sandbox,
                "owned_by_session": owned,
            }));
        }
        Ok(json!({ "count": out.len(), "sandboxes": out }))
    }

    async fn run_kill(&self, p: KillParams) -> Result<Value, ToolError> {
        let id = required(&p.sandbox_id, "sandbox_id")?.trim();
        self.session.kill(id).await?;
        Ok(json!({ "sandbox_id": id, "killed": true }))
    }
}
