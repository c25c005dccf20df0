//! `GET /health`: what the SDK polls before its first call; must say `"status": "healthy"`.

use axum::extract::State as Extract;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::State;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Health of the sandbox's agent.
///
/// What the SDK polls before its first call; answers `"status": "healthy"` as soon as the agent
/// serves requests.
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "agent_health",
    responses((status = 200, body = Object,
        description = "`status` (`healthy`), `agent`, `version`, `vm_id` (the sandbox id), \
                       `uptime` (e.g. `42s`), `features` (booleans and `languages`), \
                       `active_streams`")),
    security(("bearer" = [])))]
async fn health(Extract(state): Extract<State>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "agent": "hutch-agent",
        "version": env!("CARGO_PKG_VERSION"),
        "vm_id": state.boot().sandbox_id,
        "uptime": format!("{}s", state.started.elapsed().as_secs()),
        "features": {
            "code_execution": true,
            "file_operations": true,
            "terminal_access": true,
            "websocket_streaming": true,
            "rich_output": true,
            "background_jobs": true,
            "ipython_kernel": false,
            "system_metrics": true,
            "languages": ["python", "javascript", "bash", "go"],
        },
        "active_streams": 0,
    }))
}
