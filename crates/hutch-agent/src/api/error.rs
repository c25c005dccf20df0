//! The agent's error body, shaped for both SDK clients (`spec` §4.4): `error` is the message as a
//! *string* (the sync client crashes on an object), `message` repeats it for the async client,
//! `code` is the upper-case code both map to exceptions.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

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

    /// 500 `INTERNAL_ERROR`: an agent fault (a panicked blocking task), never a user error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    /// Adds a details object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Runs blocking work (disk I/O) on the blocking pool; its own error maps onto the API's, a
/// panicked task is a 500 naming `what`.
pub(super) async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{what} failed: {e}")))?
        .map_err(Into::into)
}

/// The body every agent error has, as the OpenAPI document describes it. Only a description:
/// [`ApiError`] builds the body itself (a test checks the two agree).
#[allow(dead_code)] // Never built: it exists for its schema.
#[derive(ToSchema)]
pub(super) struct AgentError {
    /// The message (a string: the sync SDK client crashes on an object).
    error: String,
    /// The message again, for the async SDK client.
    message: String,
    /// Upper-case code, e.g. `FILE_NOT_FOUND`, `INVALID_REQUEST`, `EXECUTION_TIMEOUT`.
    code: String,
    /// Structured details (`path`, `process_id`, …); each is also copied to the top level.
    #[schema(value_type = Object)]
    details: Value,
    /// When the error happened (RFC 3339, `Z`).
    timestamp: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The documented error schema names exactly the keys every error body has.
    #[tokio::test]
    async fn schema_matches_the_body() {
        let resp = ApiError::invalid("nope").into_response();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let schema = serde_json::to_value(AgentError::schema()).unwrap();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        documented.sort_unstable();
        assert_eq!(keys, documented);
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        required.sort_unstable();
        assert_eq!(required, documented);
    }
}
