//! The HopX agent API (`spec/hopx-protocol.md` §7–§10), one module per resource.

mod commands;
mod error;
mod health;

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
        .merge(commands::router())
        .fallback(error::not_found)
        .with_state(state)
}
