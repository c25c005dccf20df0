//! Request counters and timings for `/metrics/*`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hutch_types::AgentBoot;

/// Counters shared by all requests.
pub struct Metrics {}

impl Metrics {
    /// Empty counters.
    pub fn new(_boot: &AgentBoot) -> Self {
        Self {}
    }
}

/// Middleware recording every request.
pub async fn track(req: Request, next: Next) -> Response {
    next.run(req).await
}
