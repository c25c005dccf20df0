//! `/desktop/*` (`spec` §11): sandboxes have no X server, VNC or input tools, so every desktop
//! call answers 501 `DESKTOP_NOT_AVAILABLE` at once. 501 is neither retried by the SDK (unlike
//! 503) nor mistaken for a missing file (unlike 404); both clients map the code to
//! `DesktopNotAvailableError`, the async one reading the top-level `missing_dependencies` copy
//! that [`ApiError`] adds.

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use serde_json::json;

use super::{ApiError, State};

/// What a desktop would need; the SDK shows this list to the user.
const MISSING: &[&str] = &["xvfb", "x11vnc", "xdotool"];

pub(super) fn router() -> Router<State> {
    Router::new()
        .route("/desktop", any(unavailable))
        .route("/desktop/{*rest}", any(unavailable))
}

async fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "DESKTOP_NOT_AVAILABLE",
        "Desktop not available",
    )
    .with_details(json!({ "missing_dependencies": MISSING }))
}
