//! hutch-server: the HopX control plane over HTTP, and the gateway to sandbox agents.
//!
//! Every `/v1/*` route is the control plane (`http/`), authenticated by API key. Every other
//! path is an agent call (`gateway/`): the bearer token names the sandbox — the HopX SDK drops
//! the URL path on WebSockets, so the token is the only reliable key — and the request is
//! forwarded, unparsed, to that sandbox's agent socket. Before either, requests whose `Host` is
//! a preview name (`{port}-{sandbox}.localhost`) go to that port inside the sandbox
//! (`gateway/preview.rs`).

mod error;
mod extract;
mod gateway;
mod http;
mod openapi;
mod request_id;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use error::ApiError;
pub use state::{AppState, ServerConfig};

/// Every route the server answers itself, with its description; `slot` is where
/// `/openapi.json` will find the finished document. The one place both [`app`] and
/// [`openapi_document`] come from.
fn routes(slot: openapi::DocumentSlot) -> OpenApiRouter<Arc<AppState>> {
    http::router().routes(routes!(openapi::document).layer(Extension(slot)))
}

/// The whole HTTP surface.
pub fn app(state: Arc<AppState>) -> Router {
    let slot = openapi::DocumentSlot::default();
    let (router, doc) = routes(slot.clone()).split_for_parts();
    slot.get_or_init(|| openapi::finish(doc));
    let router = match http::mcp::service(&state) {
        Ok(mcp) => router.layer(Extension(mcp)),
        Err(e) => {
            tracing::error!(error = %e.message, "MCP endpoint disabled");
            router
        }
    };
    router
        .fallback(gateway::forward)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gateway::preview::intercept,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// The OpenAPI document of the whole API, control plane and agent (for `hutch openapi` and
/// tests); `/openapi.json` serves the same.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes(openapi::DocumentSlot::default()).into_openapi())
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
