//! The execution cache (`spec/hopx-protocol.md` §9.3).
//!
//! * `GET /cache/stats` — the documented nested shape (`cache.size`, `cache.max_size`,
//!   `cache.total_hits`, `cache.ttl` as a Go duration) plus the SDK docstring's top-level `hits`,
//!   `misses`, `hit_rate`, `size`, `count`.
//! * `POST /cache/clear` (no body) — empties the result cache and every compilation cache and
//!   resets the counters.

use axum::extract::State as Extract;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::State;
use crate::kernels::go_duration;

pub(super) fn router() -> Router<State> {
    Router::new()
        .route("/cache/stats", get(stats))
        .route("/cache/clear", post(clear).delete(clear))
}

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
