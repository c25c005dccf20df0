//! hutch-server: the HopX control plane over HTTP, and the gateway to sandbox agents.
//!
//! Every `/v1/*` route is the control plane (`http/`), authenticated by API key. Every other
//! path is an agent call (`gateway/`): the bearer token names the sandbox — the HopX SDK drops
//! the URL path on WebSockets, so the token is the only reliable key — and the request is
//! forwarded, unparsed, to that sandbox's agent socket.

mod error;
mod extract;
mod gateway;
mod http;
mod openapi;
mod request_id;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

pub use error::ApiError;
pub use state::{AppState, ServerConfig};

/// The whole HTTP surface.
pub fn app(state: Arc<AppState>) -> Router {
    let (router, doc) = http::router().split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(gateway::forward)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// The OpenAPI document (for `hutch openapi` and tests).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(http::router().split_for_parts().1)
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
