//! Files in the sandbox: `file_read`, `file_write`, `file_list`.

use hutch_client::Method;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query, required, HutchTools, QUICK};
use crate::error::{finish, ToolError};

/// Input of `file_read`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileReadParams {
    /// The file; relative paths are under `/workspace`.
    pub path: String,
    /// `utf-8` (default; invalid bytes are replaced) or `base64` (exact bytes, for images and
    /// other binary files).
    #[serde(default)]
    pub encoding: Option<String>,
    /// Read from this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `file_write`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileWriteParams {
    /// The file; relative paths are under `/workspace`. Missing directories are created, an
    /// existing file is replaced.
    pub path: String,
    /// What to write.
    pub content: String,
    /// How `content` is encoded: `utf-8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Write into this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Input of `file_list`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileListParams {
    /// The directory (default `/workspace`).
    #[serde(default)]
    pub path: Option<String>,
    /// List in this sandbox instead of the session's own.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// `utf-8` or `base64`, or an error naming both.
fn encoding(value: Option<&str>) -> Result<&'static str, ToolError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "utf-8" | "utf8" | "text") => Ok("utf-8"),
        Some("base64") => Ok("base64"),
        Some(other) => Err(ToolError::Invalid(format!(
            "unknown encoding {other:?}; use utf-8 or base64"
        ))),
    }
}

#[tool_router(router = file_tools, vis = "pub(super)")]
impl HutchTools {
    /// Reads a file.
    #[tool(
        description = "Read a file from the sandbox. Returns its content (text, or base64 with \
            encoding=base64 for binary files such as images), size and encoding. At most 64 MiB."
    )]
    pub async fn file_read(
        &self,
        Parameters(p): Parameters<FileReadParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_file_read(p).await)
    }

    /// Writes a file.
    #[tool(
        description = "Write a file in the sandbox, creating missing directories and replacing \
            an existing file. content is text, or base64 with encoding=base64."
    )]
    pub async fn file_write(
        &self,
        Parameters(p): Parameters<FileWriteParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_file_write(p).await)
    }

    /// Lists a directory.
    #[tool(
        description = "List a directory in the sandbox (default /workspace): each entry's name, \
            path, size, and whether it is a directory."
    )]
    pub async fn file_list(
        &self,
        Parameters(p): Parameters<FileListParams>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.run_file_list(p).await)
    }
}

impl HutchTools {
    async fn run_file_read(&self, p: FileReadParams) -> Result<Value, ToolError> {
        required(&p.path, "path")?;
        let encoding = encoding(p.encoding.as_deref())?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let reply = self
            .session
            .call(
                &sandbox,
                Method::GET,
                &format!("/files/read?path={}&encoding={encoding}", query(&p.path)),
                None,
                QUICK,
            )
            .await
            .map_err(|e| ToolError::sandbox(&format!("cannot read {}", p.path), e))?;
        Ok(json!({
            "path": reply["path"],
            "content": reply["content"],
            "size": reply["size"],
            "encoding": reply["encoding"],
            "lossy": reply.get("lossy").cloned().unwrap_or(json!(false)),
            "sandbox_id": sandbox.id,
        }))
    }

    async fn run_file_write(&self, p: FileWriteParams) -> Result<Value, ToolError> {
        required(&p.path, "path")?;
        let encoding = encoding(p.encoding.as_deref())?;
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let body = json!({ "path": p.path, "content": p.content, "encoding": encoding });
        let reply = self
            .session
            .call(&sandbox, Method::POST, "/files/write", Some(&body), QUICK)
            .await
            .map_err(|e| ToolError::sandbox(&format!("cannot write {}", p.path), e))?;
        Ok(json!({
            "path": reply["path"],
            "size": reply["size"],
            "sandbox_id": sandbox.id,
        }))
    }

    async fn run_file_list(&self, p: FileListParams) -> Result<Value, ToolError> {
        let path = p
            .path
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "/workspace".into());
        let sandbox = self.session.sandbox(p.sandbox_id.as_deref()).await?;
        let reply = self
            .session
            .call(
                &sandbox,
                Method::GET,
                &format!("/files/list?path={}", query(&path)),
                None,
                QUICK,
            )
            .await
            .map_err(|e| ToolError::sandbox(&format!("cannot list {path}"), e))?;
        let entries: Vec<Value> = reply["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .map(|f| {
                        json!({
                            "name": f["name"],
                            "path": f["path"],
                            "size": f["size"],
                            "is_directory": f["is_directory"].as_bool().unwrap_or(false),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "path": path,
            "count": entries.len(),
            "entries": entries,
            "truncated": reply.get("truncated").cloned().unwrap_or(json!(false)),
            "sandbox_id": sandbox.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(encoding(None).unwrap(), "utf-8");
        assert_eq!(encoding(Some("UTF8")).unwrap(), "utf-8");
        assert_eq!(encoding(Some("base64")).unwrap(), "base64");
        assert!(encoding(Some("latin1")).is_err());
    }
}
