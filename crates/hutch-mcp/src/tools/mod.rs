//! The tool server: one [`HutchTools`] per MCP session, its tools split by subject, one file
//! each (`code`, `artifacts`, `files`, `sandboxes`, `apps`), each with its own router; they are
//! added up here.

mod apps;
mod artifacts;
mod code;
mod files;
mod sandboxes;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ProtocolVersion,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};

use crate::error::{McpError, ToolError};
use crate::session::Session;
use crate::McpConfig;

/// What clients are told about the server (MCP `instructions`).
const INSTRUCTIONS: &str = "hutch runs code in isolated sandboxes. Every tool works in this \
session's own sandbox (created on first use, deleted when the session ends) unless given a \
sandbox_id. State persists between calls: files, installed packages and Python variables. Use \
execute for Python/JavaScript/Bash/Go, shell_execute for shell commands, the file_* tools for \
files, list_artifacts for plots and files an execution produced, start_web_app to serve an app \
and get its URL.";

/// Extra time an HTTP call gets beyond the run's own timeout, so a run that times out is
/// reported by the agent (with its partial output) rather than cut off by the client.
const CALL_MARGIN: Duration = Duration::from_secs(30);

/// Default timeout of plain agent calls (files, listings).
const QUICK: Duration = Duration::from_secs(60);

/// The MCP tool server of one session.
#[derive(Debug, Clone)]
pub struct HutchTools {
    session: Arc<Session>,
    tool_router: ToolRouter<Self>,
    require_sessions: bool,
}

impl HutchTools {
    /// A tool server for one session, talking to the hutch server in `config`. Nothing is
    /// contacted until a tool is called.
    pub fn new(config: &McpConfig) -> Result<Self, McpError> {
        Ok(Self {
            session: Arc::new(Session::new(config)?),
            tool_router: Self::code_tools()
                + Self::artifact_tools()
                + Self::file_tools()
                + Self::sandbox_tools()
                + Self::app_tools(),
            require_sessions: config.require_sessions,
        })
    }

    /// The session, to close it when the transport ends.
    pub(crate) fn session(&self) -> Arc<Session> {
        self.session.clone()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for HutchTools {
    /// Runs the tool. Arguments that do not decode (a missing `code`, a string for a number)
    /// are `invalid_params` protocol errors, like every other input a tool refuses: rmcp would
    /// report them as tool results (`isError`), and a client could not tell them from a
    /// sandbox that failed.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let response = self
            .tool_router
            .call(ToolCallContext::new(self, request, context))
            .await?;
        if let CallToolResponse::Complete(result) = &response {
            if let Some(message) = argument_error(result) {
                return Err(ErrorData::invalid_params(message, None));
            }
        }
        Ok(response)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hutch", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// Over HTTP, only the revisions with sessions: from 2026-07-28 on, requests carry no
    /// session, and the per-session sandbox would have nothing to belong to.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if self.require_sessions {
            Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
        } else {
            Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }
}

/// The message of a tool result rmcp made from arguments that did not decode, if it is one.
fn argument_error(result: &CallToolResult) -> Option<String> {
    if result.is_error != Some(true) || result.structured_content.is_some() {
        return None;
    }
    match result.content.as_slice() {
        [only] => only
            .as_text()
            .map(|t| t.text.as_str())
            .filter(|t| t.starts_with(ARGUMENT_ERROR_PREFIX))
            .map(|t| {
                format!(
                    "invalid arguments: {}",
                    t.trim_start_matches(ARGUMENT_ERROR_PREFIX).trim()
                )
            }),
        _ => None,
    }
}

/// How rmcp words a tool result made from arguments that did not decode.
const ARGUMENT_ERROR_PREFIX: &str = "failed to deserialize parameters:";

/// A timeout in seconds from a tool's input: `default` when absent, an error outside 1..=max.
fn seconds(value: Option<u64>, default: u64, max: u64, what: &str) -> Result<Duration, ToolError> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(s) if (1..=max).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(ToolError::Invalid(format!(
            "{what} must be between 1 and {max} seconds, got {s}"
        ))),
    }
}

/// A required text input: present and not blank.
fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::Invalid(format!("{what} must not be empty")));
    }
    Ok(value)
}

/// Percent-encodes a query value.
fn query(value: &str) -> String {
    hutch_client::api::encode_component(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info() {
        let tools = HutchTools::new(&McpConfig::new("http://127.0.0.1:1", None)).unwrap();
        let info = tools.get_info();
        assert_eq!(info.instructions.as_deref(), Some(INSTRUCTIONS));
        assert_eq!(info.server_info.name, "hutch");
    }

    #[test]
    fn every_tool_is_listed_with_a_schema() {
        let tools = HutchTools::new(&McpConfig::new("http://127.0.0.1:1", None)).unwrap();
        let mut names: Vec<String> = tools
            .tool_router
            .list_all()
            .into_iter()
            .map(|t| {
                assert!(
                    t.description.as_deref().is_some_and(|d| d.len() > 20),
                    "{} has no real description",
                    t.name
                );
                assert_eq!(
                    t.input_schema.get("type").and_then(|v| v.as_str()),
                    Some("object")
                );
                t.name.to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cleanup_artifacts",
                "create_manim_animation",
                "execute",
                "file_list",
                "file_read",
                "file_write",
                "get_execution_info",
                "list_artifacts",
                "sandbox_create",
                "sandbox_kill",
                "sandbox_list",
                "shell_execute",
                "start_web_app",
            ]
        );
    }

    #[test]
    fn http_offers_only_session_revisions() {
        let mut cfg = McpConfig::new("http://127.0.0.1:1", None);
        let stdio = HutchTools::new(&cfg).unwrap();
        assert!(stdio
            .supported_protocol_versions()
            .contains(&ProtocolVersion::V_2026_07_28));
        cfg.require_sessions = true;
        let http = HutchTools::new(&cfg).unwrap();
        let versions = http.supported_protocol_versions();
        assert!(!versions.contains(&ProtocolVersion::V_2026_07_28));
        assert!(versions.contains(&ProtocolVersion::V_2025_11_25));
    }

    #[test]
    fn undecodable_arguments_are_recognised() {
        use rmcp::model::ContentBlock;
        let rmcp_made = CallToolResult::error(vec![ContentBlock::text(
            "failed to deserialize parameters: missing field `code`",
        )]);
        assert_eq!(
            argument_error(&rmcp_made).as_deref(),
            Some("invalid arguments: missing field `code`")
        );
        let sandbox_failure = CallToolResult::error(vec![ContentBlock::text("sandbox gone")]);
        assert_eq!(argument_error(&sandbox_failure), None);
        let ok = CallToolResult::success(vec![ContentBlock::text(
            "failed to deserialize parameters: but this is output",
        )]);
        assert_eq!(argument_error(&ok), None);
    }

    #[test]
    fn timeouts_are_checked() {
        assert_eq!(seconds(None, 5, 10, "t").unwrap(), Duration::from_secs(5));
        assert_eq!(
            seconds(Some(10), 5, 10, "t").unwrap(),
            Duration::from_secs(10)
        );
        assert!(seconds(Some(0), 5, 10, "t").is_err());
        assert!(seconds(Some(11), 5, 10, "t").is_err());
        assert!(required("  ", "code").is_err());
    }
}
