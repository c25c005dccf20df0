//! Sandbox and template objects exactly as the SDK's models parse them (`spec` §6, §6.10).

use chrono::DateTime;
use hutch_manager::{IssuedToken, SandboxRecord, TemplateInfo};
use hutch_types::format_rfc3339;
use serde_json::{json, Value};

use crate::request_id;

fn ts(secs: i64) -> Value {
    DateTime::from_timestamp(secs, 0)
        .map(|t| Value::String(format_rfc3339(t)))
        .unwrap_or(Value::Null)
}

/// The sandbox object.
pub(crate) fn sandbox(r: &SandboxRecord, public_url: &str) -> Value {
    json!({
        "id": r.id.as_str(),
        "object": "sandbox",
        "status": r.status.as_str(),
        "public_host": public_url,
        "direct_url": public_url,
        "preview_url": null,
        "template_id": r.template_id,
        "template_name": r.template_name,
        "organization_id": 0,
        "node_id": "local",
        "region": "local",
        "resources": {
            "vcpu": r.resources.vcpu,
            "memory_mb": r.resources.memory_mb,
            "disk_mb": r.resources.disk_mb,
        },
        "internet_access": r.internet_access,
        "live_mode": true,
        "timeout_seconds": r.timeout_seconds,
        "expires_at": r.expires_at.map(ts),
        "created_at": ts(r.created_at),
        "request_id": request_id::current(),
    })
}

/// The sandbox object plus a token (create and refresh responses).
pub(crate) fn sandbox_with_token(r: &SandboxRecord, public_url: &str, t: &IssuedToken) -> Value {
    let mut v = sandbox(r, public_url);
    v["auth_token"] = json!(t.token);
    v["token_expires_at"] = ts(t.expires_at);
    v
}

/// The template object.
pub(crate) fn template(t: &TemplateInfo) -> Value {
    json!({
        "id": t.id,
        "object": "template",
        "name": t.name,
        "display_name": t.display_name,
        "description": t.description,
        "category": t.category,
        "language": t.language,
        "icon": null,
        "docs_url": null,
        "status": "active",
        "build_id": null,
        "organization_id": null,
        "default_resources": {
            "vcpu": t.default_resources.vcpu,
            "memory_mb": t.default_resources.memory_mb,
            "disk_gb": t.default_resources.disk_mb / 1024,
        },
        "features": t.features,
        "tags": [],
        "popularity_score": 0,
        "is_active": true,
        "is_public": t.builtin,
        "created_at": null,
        "updated_at": null,
        "request_id": request_id::current(),
    })
}
