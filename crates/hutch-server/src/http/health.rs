//! `GET /health`: the control plane's and, with a sandbox token, that sandbox's agent's.
//!
//! Both share this path (`spec` §1.4); both answer `{"status":"healthy"}`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::extract::bearer;
use crate::{gateway, AppState};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if bearer(req.headers()).is_some() {
        return gateway::forward(State(state), req).await;
    }
    Json(json!({
        "status": "healthy",
        "service": "hutch",
        "version": env!("CARGO_PKG_VERSION"),
        "backend": state.manager.backend_name(),
    }))
    .into_response()
}
