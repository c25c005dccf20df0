//! Artifacts — files executions produced (`docs/sessions-api.md`, agent routes):
//! `list_artifacts`, `cleanup_artifacts`.

use hutch_client::{ApiError, Method, SandboxError, StatusCode};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query, HutchTools, QUICK};
use crate::error::{finish, ToolError};

/// Input of `list_artifacts`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArtifactsParams {
    /// Only the artifacts of this execution (`execution_id` from `execute`).
    #[serde(default)]
    pub execution_id: Option<String>,
    /// List this sandbox's artifacts instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `cleanup_artifacts`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CleanupArtifactsParams {
    /// Clean up this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// An agent without the artifacts routes answers 404 with no error code of its own.
fn explain(context: &str, e: SandboxError) -> ToolError {
    match &e {
        SandboxError::Api(ApiError::Server {
            status: StatusCode::NOT_FOUND,
            code,
            ..
        }) if code.as_deref() != Some("FILE_NOT_FOUND") => ToolError::Sandbox(format!(
            "{context}: this sandbox's agent has no artifacts API ({e})"
        )),
        _ => ToolError::sandbox(context, e),
    }
}

#[tool_router(router = artifact_tools, vis = "pub(super)")]
impl HutchTools {
    /// Lists the artifacts executions produced.
    #[tool(
        description = "List the artifacts that executions produced in the sandbox (figures, \
            images, data files), newest last: id, name, path, type (MIME), category (plots, \
            images, videos, data, code, logs, other), size, execution_id, created_at. Read one \
            with file_read (encoding base64 for binary files)."
    )]
    pub async fn list_artifacts(
        &self,
        Parameters(p): Parameters<ListArtifactsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_list_artifacts(p).await)
    }

    /// Deletes every artifact.
    #[tool(
        description = "Delete every artifact in the sandbox (the files and their records) to \
            free space. Returns how many were removed."
    )]
    pub async fn cleanup_artifacts(
        &self,
        Parameters(p): Parameters<CleanupArtifactsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_cleanup_artifacts(p).await)
    }
}

impl HutchTools {
    async fn run_list_artifacts(&self, p: ListArtifactsParams) -> Result<Value, ToolError> {
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let path = match p.execution_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => format!("/artifacts?execution_id={}", query(id)),
            _ => "/artifacts".to_string(),
        };
        let reply = self
            .session
            .call(&sandbox, Method::GET, &path, None, QUICK)
            .await
            .map_err(|e| explain("cannot list artifacts", e))?;
        let artifacts = reply.get("artifacts").cloned().unwrap_or_else(|| json!([]));
        let count = artifacts.as_array().map_or(0, Vec::len);
        Ok(json!({
            "artifacts": artifacts,
            "count": count,
            "sandbox_id": sandbox.id,
        }))
    }

    async fn run_cleanup_artifacts(&self, p: CleanupArtifactsParams) -> Result<Value, ToolError> {
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let reply = self
            .session
            .call(&sandbox, Method::DELETE, "/artifacts", None, QUICK)
            .await
            .map_err(|e| explain("cannot clean up artifacts", e))?;
        Ok(json!({
            "removed": reply.get("removed").cloned().unwrap_or(json!(0)),
            "sandbox_id": sandbox.id,
        }))
    }
}
