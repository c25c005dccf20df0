//! `GET /health`: what the SDK polls before its first call; must say `"status": "healthy"`.

use axum::extract::State as Extract;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::State;

pub(super) fn router() -> Router<State> {
    Router::new().route("/health", get(health))
}

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
