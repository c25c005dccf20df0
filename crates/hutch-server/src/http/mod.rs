//! The control plane (`spec` §6), one module per resource, each documenting its routes.

mod builds;
mod health;
mod lifecycle;
pub(crate) mod mcp;
pub(crate) mod render;
mod sandboxes;
mod sessions;
mod templates;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use hutch_types::SandboxId;
use utoipa_axum::router::OpenApiRouter;

use crate::extract::MAX_JSON_BODY;
use crate::{ApiError, AppState};

/// Every control-plane route, with its OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    let v1 = OpenApiRouter::new()
        .merge(sandboxes::router())
        .merge(lifecycle::router())
        .merge(templates::router())
        .merge(builds::router())
        .merge(sessions::router())
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY + 1));
    OpenApiRouter::new()
        .merge(health::router())
        .merge(mcp::router())
        .merge(v1)
}

/// Parses a sandbox id from a path; an id that cannot exist is simply not found.
pub(crate) fn sandbox_id(raw: &str) -> Result<SandboxId, ApiError> {
    SandboxId::parse(raw).map_err(|_| ApiError::not_found(format!("sandbox {raw} not found")))
}
