//! Observability (`spec` §7): `GET /info`, `GET /metrics` and `/metrics/snapshot` (the async
//! and sync SDK paths of the same snapshot), `GET /metrics/prometheus`, `GET /system`,
//! `GET /ping` and `GET /jupyter/sessions`.
//!
//! System figures are the sandbox's, not the host's (see [`crate::metrics`]): memory and CPU
//! totals are the sandbox's limits, use is summed over its own processes. The disk is the
//! filesystem holding the sandbox's root, as `statvfs` reports it.

use std::fmt::Write as _;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::State;
use crate::metrics::{request_stats, RequestStats, SystemStats, Usage};

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(info))
        .routes(routes!(metrics))
        .routes(routes!(snapshot))
        .routes(routes!(prometheus))
        .routes(routes!(system))
        .routes(routes!(ping))
        .routes(routes!(jupyter_sessions))
}

/// What `/info` advertises, name → `METHOD /path` (a test checks each is documented).
pub(super) const ENDPOINTS: &[(&str, &str)] = &[
    ("health", "GET /health"),
    ("info", "GET /info"),
    ("execute", "POST /execute"),
    ("execute_async", "POST /execute/async"),
    ("execute_background", "POST /execute/background"),
    ("execute_stream", "GET /execute/stream"),
    ("list_processes", "GET /execute/processes"),
    ("kill_process", "POST /execute/kill/{process_id}"),
    ("commands_run", "POST /commands/run"),
    ("commands_background", "POST /commands/background"),
    ("system_processes", "GET /processes"),
    ("files_read", "GET /files/read"),
    ("files_write", "POST /files/write"),
    ("files_list", "GET /files/list"),
    ("files_watch", "GET /files/watch"),
    ("env", "GET /env"),
    ("cache_stats", "GET /cache/stats"),
    ("terminal", "GET /terminal"),
    ("metrics", "GET /metrics/snapshot"),
    ("metrics_prometheus", "GET /metrics/prometheus"),
    ("system", "GET /system"),
    ("jupyter_sessions", "GET /jupyter/sessions"),
];

fn features() -> Value {
    json!({
        "code_execution": true,
        "file_operations": true,
        "terminal_access": true,
        "websocket_streaming": true,
        "rich_output": true,
        "background_jobs": true,
        "ipython_kernel": false,
        "system_metrics": true,
        "desktop": false,
        "languages": ["python", "javascript", "bash", "go"],
    })
}

/// The sandbox's IPv4 address: the first non-loopback local address in the routing table of
/// the sandbox's network namespace (`/proc/net/fib_trie`), or `None` without a network.
fn vm_ip() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.starts_with("127.")) {
                return Some(ip.to_string());
            }
        }
    }
    None
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Agent and sandbox information.
///
/// `vm_port` is `null`: the agent listens on a unix socket the host forwards to, not on a port
/// of its own.
#[utoipa::path(get, path = "/info", tag = "metrics", operation_id = "agent_info",
    responses((status = 200, body = Object, description = "`agent`, `agent_version`, `version`, \
        `vm_id`, `sandbox_id`, `template`, `os`, `arch`, `kernel`, `hostname`, `vm_ip`, \
        `vm_port` (null), `start_time`, `uptime` (seconds), `resources`, `endpoints` (name → \
        `METHOD /path`), `features`, `timestamp`")),
    security(("bearer" = [])))]
async fn info(Extract(state): Extract<State>) -> Json<Value> {
    let uptime = state.started.elapsed();
    let start = Utc::now() - chrono::Duration::from_std(uptime).unwrap_or_default();
    let endpoints: serde_json::Map<String, Value> = ENDPOINTS
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    let boot = state.boot();
    Json(json!({
        "agent": "hutch-agent",
        "agent_version": env!("CARGO_PKG_VERSION"),
        "version": env!("CARGO_PKG_VERSION"),
        "vm_id": boot.sandbox_id,
        "sandbox_id": boot.sandbox_id,
        "template": boot.template,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        "hostname": read_trimmed("/proc/sys/kernel/hostname"),
        "vm_ip": vm_ip(),
        "vm_port": Value::Null,
        "start_time": hutch_types::format_rfc3339(start),
        "uptime": uptime.as_secs(),
        "resources": boot.resources,
        "endpoints": endpoints,
        "features": features(),
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "total": u.total,
        "used": u.used,
        "free": u.free,
        "usage_percent": u.percent(),
        "total_mb": u.total / (1024 * 1024),
        "used_mb": u.used / (1024 * 1024),
        "free_mb": u.free / (1024 * 1024),
    })
}

fn system_json(sys: &SystemStats) -> Value {
    json!({
        "cpu": {"usage_percent": sys.cpu.usage_percent, "cores": sys.cpu.cores},
        "memory": usage_json(&sys.memory),
        "disk": usage_json(&sys.disk),
    })
}

/// Executions in progress: requests running user code now, plus running background jobs.
fn active_executions(state: &State, req: &RequestStats) -> u64 {
    req.active_executions + state.jobs.running_count() as u64
}

/// What the metrics snapshot holds.
const SNAPSHOT: &str = "`uptime_seconds`, `total_requests`, `total_errors`, `error_count`, \
    `total_executions`, `active_executions`, `requests_total` / `errors_total` / \
    `avg_duration_ms` (by route template), `p95_duration_ms`, `system` {`cpu`, `memory`, \
    `disk`}, `process` {`count`, `running`, `threads`}, `background_jobs` {`total`, \
    `running`}, `cache` {`size`, `max_size`, `hits`, `misses`, `hit_rate`} (the result cache, \
    as `/cache/stats`), `timestamp`";

/// Metrics snapshot (the async SDK's path).
///
/// Same as `GET /metrics/snapshot`.
#[utoipa::path(get, path = "/metrics", tag = "metrics", operation_id = "metrics",
    responses((status = 200, body = Object, description = SNAPSHOT)),
    security(("bearer" = [])))]
async fn metrics(state: Extract<State>) -> Json<Value> {
    snapshot(state).await
}

/// Metrics snapshot.
///
/// Request counts and timings, the sandbox's CPU, memory, disk and processes, background jobs
/// and the result cache.
#[utoipa::path(get, path = "/metrics/snapshot", tag = "metrics", operation_id = "metrics_snapshot",
    responses((status = 200, body = Object, description = SNAPSHOT)),
    security(("bearer" = [])))]
async fn snapshot(Extract(state): Extract<State>) -> Json<Value> {
    let req = request_stats();
    let sys = state.metrics.system().await;
    let requests: serde_json::Map<String, Value> = req
        .paths
        .iter()
        .map(|(p, s)| (p.clone(), json!(s.count)))
        .collect();
    let avg: serde_json::Map<String, Value> = req
        .paths
        .iter()
        .map(|(p, s)| (p.clone(), json!(round3(s.avg_ms()))))
        .collect();
    let errors: serde_json::Map<String, Value> = req
        .paths
        .iter()
        .filter(|(_, s)| s.errors > 0)
        .map(|(p, s)| (p.clone(), json!(s.errors)))
        .collect();
    let jobs = state.jobs.list();
    let running_jobs = jobs.iter().filter(|j| j.is_running()).count();
    let cache = state.kernels.cache_stats();
    Json(json!({
        "uptime_seconds": round3(state.started.elapsed().as_secs_f64()),
        "total_requests": req.total,
        "total_errors": req.errors,
        "error_count": req.errors,
        "total_executions": req.executions,
        "active_executions": active_executions(&state, &req),
        "requests_total": requests,
        "errors_total": errors,
        "avg_duration_ms": avg,
        "p95_duration_ms": round3(req.p95_ms),
        "system": system_json(&sys),
        "process": {
            "count": sys.processes.count,
            "running": sys.processes.running,
            "threads": sys.processes.threads,
        },
        "background_jobs": {"total": jobs.len(), "running": running_jobs},
        // The result cache's own counters (the same ones `/cache/stats` reports), so a
        // dashboard polling only the snapshot sees whether opted-in executions are served
        // from it.
        "cache": {
            "size": cache.size,
            "max_size": cache.max_size,
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": cache.hit_rate(),
        },
        "timestamp": hutch_types::now_rfc3339(),
    }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics/prometheus", tag = "metrics",
    operation_id = "metrics_prometheus",
    responses((status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String, description = "`hutch_agent_*` gauges and counters")),
    security(("bearer" = [])))]
async fn prometheus(Extract(state): Extract<State>) -> impl IntoResponse {
    let req = request_stats();
    let sys = state.metrics.system().await;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: f64| vec![(String::new(), v)];
    family(
        "hutch_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        plain(state.started.elapsed().as_secs_f64()),
    );
    family(
        "hutch_agent_http_requests_total",
        "counter",
        "HTTP requests answered, by route.",
        req.paths
            .iter()
            .map(|(p, s)| (format!("{{path=\"{}\"}}", label(p)), s.count as f64))
            .collect(),
    );
    family(
        "hutch_agent_http_errors_total",
        "counter",
        "HTTP requests answered with status >= 400, by route.",
        req.paths
            .iter()
            .map(|(p, s)| (format!("{{path=\"{}\"}}", label(p)), s.errors as f64))
            .collect(),
    );
    family(
        "hutch_agent_http_request_duration_ms_avg",
        "gauge",
        "Mean request duration in milliseconds, by route.",
        req.paths
            .iter()
            .map(|(p, s)| (format!("{{path=\"{}\"}}", label(p)), round3(s.avg_ms())))
            .collect(),
    );
    family(
        "hutch_agent_http_request_duration_ms_p95",
        "gauge",
        "95th percentile of recent request durations in milliseconds.",
        plain(round3(req.p95_ms)),
    );
    family(
        "hutch_agent_executions_total",
        "counter",
        "Requests that ran user code.",
        plain(req.executions as f64),
    );
    family(
        "hutch_agent_active_executions",
        "gauge",
        "Executions in progress, background jobs included.",
        plain(active_executions(&state, &req) as f64),
    );
    family(
        "hutch_agent_cpu_usage_percent",
        "gauge",
        "CPU use of the sandbox's processes in percent of its vCPU quota.",
        plain(sys.cpu.usage_percent),
    );
    family(
        "hutch_agent_cpu_cores",
        "gauge",
        "vCPUs the sandbox may use.",
        plain(f64::from(sys.cpu.cores)),
    );
    let bytes = |u: &Usage| {
        vec![
            ("{kind=\"total\"}".to_string(), u.total as f64),
            ("{kind=\"used\"}".to_string(), u.used as f64),
            ("{kind=\"free\"}".to_string(), u.free as f64),
        ]
    };
    family(
        "hutch_agent_memory_bytes",
        "gauge",
        "Sandbox memory: limit, resident sets of its processes, and the difference.",
        bytes(&sys.memory),
    );
    family(
        "hutch_agent_disk_bytes",
        "gauge",
        "The filesystem holding the sandbox root.",
        bytes(&sys.disk),
    );
    family(
        "hutch_agent_processes",
        "gauge",
        "Processes in the sandbox.",
        plain(sys.processes.count as f64),
    );
    family(
        "hutch_agent_processes_running",
        "gauge",
        "Processes in the sandbox that are on a CPU or runnable.",
        plain(sys.processes.running as f64),
    );
    family(
        "hutch_agent_background_jobs_running",
        "gauge",
        "Background jobs still running.",
        plain(state.jobs.running_count() as f64),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The sandbox's system figures.
#[utoipa::path(get, path = "/system", tag = "metrics", operation_id = "system",
    responses((status = 200, body = Object, description = "`cpu` {`usage_percent`, `cores`}, \
        `memory` and `disk` {`total`, `used`, `free`, `usage_percent`, `total_mb`, `used_mb`, \
        `free_mb`}, `process`, `hostname`, `os`, `arch`, `kernel`, `load_average`, \
        `uptime_seconds`, `timestamp`")),
    security(("bearer" = [])))]
async fn system(Extract(state): Extract<State>) -> Json<Value> {
    let sys = state.metrics.system().await;
    let load: Vec<f64> = read_trimmed("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut body = system_json(&sys);
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "process".into(),
            json!({
                "count": sys.processes.count,
                "running": sys.processes.running,
                "threads": sys.processes.threads,
            }),
        );
        obj.insert(
            "hostname".into(),
            json!(read_trimmed("/proc/sys/kernel/hostname")),
        );
        obj.insert("os".into(), json!(std::env::consts::OS));
        obj.insert("arch".into(), json!(std::env::consts::ARCH));
        obj.insert(
            "kernel".into(),
            json!(read_trimmed("/proc/sys/kernel/osrelease")),
        );
        obj.insert("load_average".into(), json!(load));
        obj.insert(
            "uptime_seconds".into(),
            json!(round3(state.started.elapsed().as_secs_f64())),
        );
        obj.insert("timestamp".into(), json!(hutch_types::now_rfc3339()));
    }
    Json(body)
}

/// Ping.
#[utoipa::path(get, path = "/ping", tag = "health", operation_id = "ping",
    responses((status = 200, body = Object, description = "`status` (`ok`), `message` (`pong`), \
        `timestamp`")),
    security(("bearer" = [])))]
async fn ping() -> Json<Value> {
    Json(json!({"status": "ok", "message": "pong", "timestamp": hutch_types::now_rfc3339()}))
}

/// Jupyter sessions (always none).
///
/// No Jupyter server runs in a sandbox; an empty list is what the SDK expects then.
#[utoipa::path(get, path = "/jupyter/sessions", tag = "metrics", operation_id = "jupyter_sessions",
    responses((status = 200, body = Object, description = "`sessions` (empty), `count` (0), \
        `timestamp`")),
    security(("bearer" = [])))]
async fn jupyter_sessions() -> Json<Value> {
    Json(json!({"sessions": [], "count": 0, "timestamp": hutch_types::now_rfc3339()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
