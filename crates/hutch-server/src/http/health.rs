//! `GET /health`: the control plane's and, with a sandbox token, that sandbox's agent's.
//!
//! Both share this path (`spec` §1.4); both answer `{"status":"healthy"}`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hutch_types::wire::HealthObject;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::bearer;
use crate::{gateway, AppState};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Health of the server, or of a sandbox's agent.
///
/// Without a bearer token: the server's health; no API key needed. With
/// `Authorization: Bearer <sandbox token>`: that sandbox's agent's (the SDK polls this before its
/// first agent call).
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The server is healthy", body = HealthObject)))]
async fn health(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if bearer(req.headers()).is_some() {
        return gateway::forward(State(state), req).await;
    }
    Json(HealthObject {
        status: "healthy".into(),
        service: "hutch".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.manager.backend_name().into(),
    })
    .into_response()
}
