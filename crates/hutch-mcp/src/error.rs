//! What can go wrong: setting the server up ([`McpError`]), and one tool call ([`ToolError`]),
//! which becomes either an MCP protocol error or a tool result with `isError`.

use hutch_client::{ApiError, ControlError, SandboxError};
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::ErrorData;
use serde_json::Value;

/// A failure to set up or run the MCP server itself.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The hutch server URL cannot be used.
    #[error("bad hutch server URL")]
    Url(#[from] ControlError),
    /// The MCP service could not start (the client's handshake failed).
    #[error("MCP service failed to start: {0}")]
    Start(String),
}

/// Why one tool call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    /// The input cannot be acted on: reported as a protocol error (`invalid_params`).
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but the sandbox cannot serve it at all (a tool its template
    /// lacks): a protocol error (`invalid_request`) with details.
    #[error("{message}")]
    Unavailable {
        /// What is missing and what to do.
        message: String,
        /// Structured details.
        data: Value,
    },
    /// Something went wrong in or with the sandbox: a tool result with `isError: true`.
    #[error("{0}")]
    Sandbox(String),
}

impl ToolError {
    /// A sandbox failure with `context` in front of the cause.
    pub(crate) fn sandbox(context: &str, e: impl std::fmt::Display) -> Self {
        ToolError::Sandbox(format!("{context}: {e}"))
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        ToolError::Sandbox(describe_api(&e))
    }
}

impl From<SandboxError> for ToolError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Api(e) => e.into(),
            e => ToolError::Sandbox(e.to_string()),
        }
    }
}

/// The message of a failed API call, with the cause chain of transport errors (the top-level
/// text alone, "request failed", says nothing).
pub(crate) fn describe_api(e: &ApiError) -> String {
    match e {
        ApiError::Transport(t) => {
            let mut text = t.to_string();
            let mut source = std::error::Error::source(t);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            format!("cannot reach the hutch server: {text}")
        }
        e => e.to_string(),
    }
}

/// Turns a tool's outcome into what MCP sends: the JSON object as structured content (and as
/// text, for clients that only show text), a tool error, or a protocol error.
pub(crate) fn finish(outcome: Result<Value, ToolError>) -> Result<CallToolResult, ErrorData> {
    match outcome {
        Ok(value) => Ok(CallToolResult::structured(value)),
        Err(ToolError::Invalid(message)) => Err(ErrorData::invalid_params(message, None)),
        Err(ToolError::Unavailable { message, data }) => {
            Err(ErrorData::invalid_request(message, Some(data)))
        }
        Err(ToolError::Sandbox(message)) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_mcp() {
        let ok = finish(Ok(serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(ok.is_error, Some(false));
        assert_eq!(ok.structured_content, Some(serde_json::json!({"a": 1})));
        let failed = finish(Err(ToolError::Sandbox("boom".into()))).unwrap();
        assert_eq!(failed.is_error, Some(true));
        let invalid = finish(Err(ToolError::Invalid("bad".into()))).unwrap_err();
        assert_eq!(invalid.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert_eq!(invalid.message, "bad");
        let missing = finish(Err(ToolError::Unavailable {
            message: "no manim".into(),
            data: Value::Null,
        }))
        .unwrap_err();
        assert_eq!(missing.code, rmcp::model::ErrorCode::INVALID_REQUEST);
    }
}
