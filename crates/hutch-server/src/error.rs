//! The control plane's one error type and its JSON shape (`spec` §4.1): `error` is an object with
//! `message`, `code`, `request_id`, `details`, and `code`/`request_id` are repeated at the top.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hutch_manager::ManagerError;
use serde_json::{json, Value};

use crate::request_id;

/// A control-plane error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Upper-case code.
    pub code: &'static str,
    /// Message for humans.
    pub message: String,
    /// Extra structured data.
    pub details: Value,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// 400 `VALIDATION_ERROR`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 404 `RESOURCE_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND", message)
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match &e {
            ManagerError::NotFound(_) => Self::not_found(e.to_string()),
            ManagerError::TemplateNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "TEMPLATE_NOT_FOUND", e.to_string())
            }
            ManagerError::Invalid(_) => Self::invalid(e.to_string()),
            ManagerError::WrongState { status, .. } => {
                Self::new(StatusCode::CONFLICT, "INVALID_STATE", e.to_string())
                    .with_details(json!({ "status": status.as_str() }))
            }
            ManagerError::BuildNotFound(_)
            | ManagerError::SessionNotFound(_)
            | ManagerError::ArtifactNotFound(_) => Self::not_found(e.to_string()),
            ManagerError::Agent(_) => {
                tracing::warn!(error = %e, "agent call failed");
                Self::new(StatusCode::BAD_GATEWAY, "AGENT_ERROR", e.to_string())
            }
            ManagerError::Conflict(_) => Self::new(StatusCode::CONFLICT, "CONFLICT", e.to_string()),
            ManagerError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string())
            }
            ManagerError::Protected(_) => {
                Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string())
            }
            ManagerError::PortUnreachable { port, .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "PORT_NOT_LISTENING", e.to_string())
                    .with_details(json!({ "port": port }))
            }
            ManagerError::Runtime(_)
            | ManagerError::Store(_)
            | ManagerError::AgentNotReady(_)
            | ManagerError::Task(_) => {
                tracing::error!(error = %e, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    e.to_string(),
                )
            }
        }
    }
}

impl ApiError {
    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id::current();
        let body = json!({
            "error": {
                "message": self.message,
                "code": self.code,
                "request_id": request_id,
                "details": self.details,
            },
            "code": self.code,
            "request_id": request_id,
        });
        (self.status, Json(body)).into_response()
    }
}
