//! Records → wire objects (`hutch_types::wire`).

use chrono::DateTime;
use hutch_manager::{IssuedToken, SandboxRecord, TemplateInfo};
use hutch_types::format_rfc3339;
use hutch_types::wire::{ResourcesObject, SandboxObject, TemplateObject, TemplateResources};

use crate::request_id;

fn ts(secs: i64) -> Option<String> {
    DateTime::from_timestamp(secs, 0).map(format_rfc3339)
}

/// The sandbox object.
pub(crate) fn sandbox(r: &SandboxRecord, public_url: &str) -> SandboxObject {
    SandboxObject {
        id: r.id.to_string(),
        object: "sandbox".into(),
        status: r.status,
        public_host: public_url.to_string(),
        direct_url: public_url.to_string(),
        preview_url: Some(crate::gateway::preview::preview_url(
            public_url,
            r.id.as_str(),
        )),
        template_id: r.template_id.clone(),
        template_name: r.template_name.clone(),
        organization_id: 0,
        node_id: "local".into(),
        region: "local".into(),
        resources: ResourcesObject {
            vcpu: r.resources.vcpu,
            memory_mb: r.resources.memory_mb,
            disk_mb: r.resources.disk_mb,
        },
        internet_access: r.internet_access,
        live_mode: true,
        timeout_seconds: r.timeout_seconds,
        expires_at: r.expires_at.and_then(ts),
        created_at: ts(r.created_at),
        auth_token: None,
        token_expires_at: None,
        request_id: request_id::current(),
    }
}

/// The sandbox object plus a token (create and refresh replies).
pub(crate) fn sandbox_with_token(
    r: &SandboxRecord,
    public_url: &str,
    t: &IssuedToken,
) -> SandboxObject {
    SandboxObject {
        auth_token: Some(t.token.clone()),
        token_expires_at: ts(t.expires_at),
        ..sandbox(r, public_url)
    }
}

/// The template object.
pub(crate) fn template(t: &TemplateInfo) -> TemplateObject {
    TemplateObject {
        id: t.id.clone(),
        object: "template".into(),
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        description: Some(t.description.clone()),
        category: Some(t.category.clone()),
        language: Some(t.language.clone()),
        icon: None,
        docs_url: None,
        status: Some(t.status.as_str().into()),
        build_id: t.build_id.clone(),
        organization_id: None,
        default_resources: TemplateResources {
            vcpu: t.default_resources.vcpu,
            memory_mb: t.default_resources.memory_mb,
            disk_gb: t.default_resources.disk_mb / 1024,
        },
        features: t.features.clone(),
        tags: Vec::new(),
        popularity_score: Some(0),
        is_active: t.is_active(),
        is_public: Some(t.builtin),
        created_at: t.created_at.and_then(ts),
        updated_at: t.updated_at.and_then(ts),
        request_id: request_id::current(),
    }
}
