//! The agent's error body, shaped for both SDK clients (`spec` §4.4): `error` is the message as a
//! *string* (the sync client crashes on an object), `message` repeats it for the async client,
//! `code` is the upper-case code both map to exceptions.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An agent API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status. Never 429 or 5xx for a user-level failure: the SDK retries those.
    pub status: StatusCode,
    /// Upper-case code, e.g. `FILE_NOT_FOUND`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Extra fields (`path`, …).
    pub details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// 400 `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// Adds a details object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.message,
            "message": self.message,
            "code": self.code,
            "details": self.details,
            "timestamp": hutch_types::now_rfc3339(),
        });
        // Top-level copies of detail fields (`path`, `missing_dependencies`) for the async client.
        if let (Some(obj), Some(details)) = (body.as_object_mut(), self.details.as_object()) {
            for (k, v) in details {
                obj.entry(k.clone()).or_insert(v.clone());
            }
        }
        (self.status, Json(body)).into_response()
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such agent endpoint")
}
