//! `/desktop/*` (`spec` §11): sandboxes have no X server, VNC or input tools, so every desktop
//! call answers 501 `DESKTOP_NOT_AVAILABLE` at once. 501 is neither retried by the SDK (unlike
//! 503) nor mistaken for a missing file (unlike 404); both clients map the code to
//! `DesktopNotAvailableError`, the async one reading the top-level `missing_dependencies` copy
//! that [`ApiError`] adds.

use axum::http::StatusCode;
use axum::routing::any;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AgentError;
use super::{ApiError, State};

/// What a desktop would need; the SDK shows this list to the user.
const MISSING: &[&str] = &["xvfb", "x11vnc", "xdotool"];

/// The routes are catch-alls for every method, which `routes!` cannot register: it would route
/// the documented template `/desktop/{path}` (one segment) for GET and POST only. So only the
/// document is taken from the annotated operations, and the catch-alls are added by hand next
/// to it.
pub(super) fn router() -> OpenApiRouter<State> {
    let doc = OpenApiRouter::<State>::new()
        .routes(routes!(desktop_get, desktop_post))
        .into_openapi();
    OpenApiRouter::with_openapi(doc)
        .route("/desktop", any(unavailable))
        .route("/desktop/{*rest}", any(unavailable))
}

/// Why every desktop call fails.
const UNAVAILABLE: &str = "`DESKTOP_NOT_AVAILABLE`, with `missing_dependencies` (`xvfb`, \
                           `x11vnc`, `xdotool`) in `details` and at the top level";

/// Desktop automation (not available).
///
/// Every method on `/desktop` and on any path under it (`/desktop/vnc/start`,
/// `/desktop/screenshot`, `/desktop/mouse/click`, …) answers 501 at once: sandboxes have no X
/// server, VNC or input tools. 501 is neither retried by the SDK nor mistaken for a missing
/// file; both clients raise `DesktopNotAvailableError`.
#[utoipa::path(get, path = "/desktop/{path}", tag = "desktop", operation_id = "desktop_get",
    params(("path" = String, Path, description = "Any desktop path, several segments allowed")),
    responses((status = 501, body = AgentError, description = UNAVAILABLE)),
    security(("bearer" = [])))]
async fn desktop_get() -> ApiError {
    unavailable().await
}

/// Desktop automation (not available).
///
/// As `GET /desktop/{path}`: every method answers 501.
#[utoipa::path(post, path = "/desktop/{path}", tag = "desktop", operation_id = "desktop_post",
    params(("path" = String, Path, description = "Any desktop path, several segments allowed")),
    responses((status = 501, body = AgentError, description = UNAVAILABLE)),
    security(("bearer" = [])))]
async fn desktop_post() -> ApiError {
    unavailable().await
}

async fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "DESKTOP_NOT_AVAILABLE",
        "Desktop not available",
    )
    .with_details(json!({ "missing_dependencies": MISSING }))
}
