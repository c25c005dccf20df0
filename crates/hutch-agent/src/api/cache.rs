//! The execution cache (`spec/hopx-protocol.md` §9.3).
//!
//! * `GET /cache/stats` — the documented nested shape (`cache.size`, `cache.max_size`,
//!   `cache.total_hits`, `cache.ttl` as a Go duration) plus the SDK docstring's top-level `hits`,
//!   `misses`, `hit_rate`, `size`, `count`.
//! * `POST /cache/clear` (no body) — empties the result cache and every compilation cache and
//!   resets the counters.

use axum::extract::State as Extract;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::State;
use crate::kernels::go_duration;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(clear, clear_delete))
}

/// Result-cache statistics.
#[utoipa::path(get, path = "/cache/stats", tag = "cache", operation_id = "cache_stats",
    responses((status = 200, body = Object,
        description = "`cache` {`size`, `max_size`, `total_hits`, `ttl` (Go duration, e.g. \
            `1h0m0s`), `hits`, `misses`, `hit_rate`, `compiled_entries`} and the same figures \
            at the top level: `size`, `count`, `max_size`, `hits`, `total_hits`, `misses`, \
            `hit_rate`, `ttl`, `ttl_seconds`, `compiled_entries`, plus `timestamp`")),
    security(("bearer" = [])))]
async fn stats(Extract(state): Extract<State>) -> Json<Value> {
    let s = state.kernels.cache_stats();
    let ttl = go_duration(s.ttl);
    let hit_rate = s.hit_rate();
    Json(json!({
        "cache": {
            "size": s.size,
            "max_size": s.max_size,
            "total_hits": s.hits,
            "ttl": ttl,
            "hits": s.hits,
            "misses": s.misses,
            "hit_rate": hit_rate,
            "compiled_entries": s.compiled_entries,
        },
        "size": s.size,
        "count": s.size,
        "max_size": s.max_size,
        "hits": s.hits,
        "total_hits": s.hits,
        "misses": s.misses,
        "hit_rate": hit_rate,
        "ttl": ttl,
        "ttl_seconds": s.ttl.as_secs(),
        "compiled_entries": s.compiled_entries,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

/// Empty every cache.
///
/// Removes every cached result and compiled program and resets the counters. No body.
#[utoipa::path(post, path = "/cache/clear", tag = "cache", operation_id = "cache_clear",
    responses((status = 200, body = Object, description = CLEARED)),
    security(("bearer" = [])))]
async fn clear(Extract(state): Extract<State>) -> Json<Value> {
    let (results, compiled) = state.kernels.clear_cache();
    Json(json!({
        "success": true,
        "message": "Cache cleared successfully",
        "entries_removed": results,
        "compiled_entries_removed": compiled,
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

/// The reply to a clear.
const CLEARED: &str = "`success` (true), `message`, `entries_removed` (results), \
                       `compiled_entries_removed`, `timestamp`";

/// Empty every cache (`DELETE` form).
///
/// Same as `POST /cache/clear`.
#[utoipa::path(delete, path = "/cache/clear", tag = "cache", operation_id = "cache_clear_delete",
    responses((status = 200, body = Object, description = CLEARED)),
    security(("bearer" = [])))]
async fn clear_delete(state: Extract<State>) -> Json<Value> {
    clear(state).await
}
