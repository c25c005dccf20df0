//! Routes of this resource (see `spec/hopx-protocol.md`).

use axum::Router;

use super::State;

pub(super) fn router() -> Router<State> {
    Router::new()
}
