//! The HopX agent API (`spec/hopx-protocol.md` §7–§10), one module per resource.

mod boot;
mod cache;
mod commands;
mod desktop;
mod env;
mod error;
mod execute;
mod files;
mod health;
mod metrics;
mod processes;
mod terminal;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use crate::state::AgentState;

/// Shared state as handlers see it.
pub type State = Arc<AgentState>;

/// Every agent route.
pub fn router(state: State) -> Router {
    Router::new()
        .merge(health::router())
        .merge(boot::router())
        .merge(commands::router())
        .merge(execute::router())
        .merge(files::router())
        .merge(env::router())
        .merge(processes::router())
        .merge(terminal::router())
        .merge(metrics::router())
        .merge(cache::router())
        .merge(desktop::router())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}
