//! Control-plane wire types (`spec/hopx-protocol.md` §6), exactly as the SDK's models parse them.
//!
//! They derive `ToSchema`, so the served OpenAPI document is generated from the same types the
//! server serialises.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::SandboxStatus;

/// `resources` of a sandbox: all three keys are required by the SDK when the object is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesObject {
    /// CPUs (CFS quota).
    pub vcpu: u32,
    /// Memory limit, MiB.
    pub memory_mb: u64,
    /// Disk size, MiB.
    pub disk_mb: u64,
}

/// A sandbox (`GET /v1/sandboxes/{id}` and every lifecycle reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxObject {
    /// Sandbox id.
    pub id: String,
    /// Always `sandbox`.
    pub object: String,
    /// Lifecycle status.
    pub status: SandboxStatus,
    /// Base URL of the sandbox's agent API (this server; the bearer token selects the sandbox).
    pub public_host: String,
    /// Same as `public_host` (the SDK's fallback).
    pub direct_url: String,
    /// Where services inside the sandbox are reached from outside: a URL with the literal
    /// placeholder `{port}` (`http://{port}-<id>.localhost:7770/`); replace it with the port a
    /// service listens on inside the sandbox (any address, its 127.0.0.1 included). No API key
    /// is needed; only running sandboxes answer.
    pub preview_url: Option<String>,
    /// Template id — a string, never an int (the SDK's pydantic model rejects ints).
    pub template_id: String,
    /// Template name.
    pub template_name: String,
    /// Organization (an integer for the SDK).
    pub organization_id: i64,
    /// Node that runs the sandbox.
    pub node_id: String,
    /// Region.
    pub region: String,
    /// Limits.
    pub resources: ResourcesObject,
    /// Whether it may reach the internet.
    pub internet_access: bool,
    /// Always true: there is no separate test mode.
    pub live_mode: bool,
    /// Auto-kill delay in seconds; null = never.
    pub timeout_seconds: Option<i64>,
    /// When the reaper kills it (RFC 3339, `Z`); null = never.
    pub expires_at: Option<String>,
    /// Creation time (RFC 3339, `Z`).
    pub created_at: Option<String>,
    /// Agent bearer token (create and token-refresh replies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Expiry of `auth_token` (RFC 3339, whole seconds, `Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
    /// Id of the request that produced this reply.
    pub request_id: String,
}

/// A template given by id: the SDK sends a string, other clients may send a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TemplateRef {
    /// Id or name as a string.
    Text(String),
    /// Numeric id.
    Number(i64),
}

impl TemplateRef {
    /// The reference as a string (what the registry looks up).
    pub fn as_key(&self) -> String {
        match self {
            TemplateRef::Text(s) => s.clone(),
            TemplateRef::Number(n) => n.to_string(),
        }
    }
}

/// `POST /v1/sandboxes`. Unknown fields are ignored; `template_id` wins over `template_name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateSandboxRequest {
    /// Template name, e.g. `code-interpreter`.
    pub template_name: Option<String>,
    /// Template id.
    pub template_id: Option<TemplateRef>,
    /// Region (there is one: `local`).
    pub region: Option<String>,
    /// Auto-kill after this many seconds.
    pub timeout_seconds: Option<i64>,
    /// Internet access (default true).
    pub internet_access: Option<bool>,
    /// Environment variables for every process in the sandbox.
    pub env_vars: Option<BTreeMap<String, String>>,
    /// CPUs (deprecated in HopX; honoured here).
    pub vcpu: Option<u32>,
    /// Memory limit in MiB (deprecated in HopX; honoured here).
    pub memory_mb: Option<u64>,
    /// Disk size in GiB (deprecated in HopX; reported, not enforced).
    pub disk_gb: Option<u64>,
    /// Disk size in MiB (reported, not enforced).
    pub disk_mb: Option<u64>,
}

/// `PUT /v1/sandboxes/{id}/timeout`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TimeoutRequest {
    /// New auto-kill delay, counted from now.
    pub timeout_seconds: Option<i64>,
}

/// A page of sandboxes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxList {
    /// Always `list`.
    pub object: String,
    /// The sandboxes, oldest first.
    pub data: Vec<SandboxObject>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Cursor of the next page; null on the last one.
    pub next_cursor: Option<String>,
    /// Request id.
    pub request_id: String,
}

/// The reply to `DELETE /v1/sandboxes/{id}` (the SDK needs a JSON body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedObject {
    /// The removed id.
    pub id: String,
    /// `sandbox` or `template`.
    pub object: String,
    /// Always `deleted`.
    pub status: String,
    /// Request id.
    pub request_id: String,
}

/// Default, minimum or maximum resources of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateResources {
    /// CPUs.
    pub vcpu: u32,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Disk, GiB.
    pub disk_gb: u64,
}

/// A template as the SDK's `Template` model parses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateObject {
    /// Id (a string).
    pub id: String,
    /// Always `template`.
    pub object: String,
    /// Slug.
    pub name: String,
    /// Human name.
    pub display_name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Main language.
    pub language: Option<String>,
    /// Icon URL.
    pub icon: Option<String>,
    /// Documentation URL.
    pub docs_url: Option<String>,
    /// pending, building, active, failed or archived.
    pub status: Option<String>,
    /// Build that produced it.
    pub build_id: Option<String>,
    /// Owning organization (a string here, unlike sandboxes).
    pub organization_id: Option<String>,
    /// Resources sandboxes get by default.
    pub default_resources: TemplateResources,
    /// What it offers (never null).
    pub features: Vec<String>,
    /// Labels (never null).
    pub tags: Vec<String>,
    /// Ordering hint.
    pub popularity_score: Option<i64>,
    /// Whether sandboxes can be created from it (never null).
    pub is_active: bool,
    /// Whether it ships with hutch.
    pub is_public: Option<bool>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
    /// Request id.
    pub request_id: String,
}

/// Templates.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// Always `list`.
    pub object: String,
    /// The templates.
    pub data: Vec<TemplateObject>,
    /// Always false: every template fits one page.
    pub has_more: bool,
    /// Request id.
    pub request_id: String,
}

/// `GET /health` of the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthObject {
    /// Always `healthy` when the server answers.
    pub status: String,
    /// `hutch`.
    pub service: String,
    /// hutch version.
    pub version: String,
    /// Sandbox backend (`native`).
    pub backend: String,
}

/// The inner error object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
    /// Upper-case code, e.g. `RESOURCE_NOT_FOUND`.
    pub code: String,
    /// Request id.
    pub request_id: String,
    /// Structured details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A control-plane error: `error` is an object (the agent's errors differ: there it is a string).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// Same as `error.code`.
    pub code: String,
    /// Same as `error.request_id`.
    pub request_id: String,
}

// ---- Template builds: hutch's own (a TOML spec) and HopX's (`spec` §6.11) ----

/// `POST /v1/templates/builds`: build a template from a hutch TOML spec (`templates/README.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TemplateBuildRequest {
    /// Template name: a slug of lower-case letters, digits, `-`, `_` and `.`, starting with a
    /// letter.
    pub name: String,
    /// The spec, as TOML text.
    pub spec: String,
    /// Replace an existing template of this name once the new build succeeds (sandboxes that
    /// already run keep the root they started from).
    #[serde(default)]
    pub force: bool,
}

/// The reply to starting a build: 202 on `POST /v1/templates/builds`, 201 on the HopX
/// `POST /v1/templates/build`. Exactly these keys: the SDK's dataclass rejects any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateBuildStarted {
    /// Build id (for the status route).
    pub build_id: String,
    /// Template id (a string).
    pub template_id: String,
    /// Always `building`.
    pub status: String,
    /// Where the build log is served (JSON, `?offset=N`).
    pub logs_url: String,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /v1/templates/build/{build_id}/status`. Exactly these keys (the SDK's dataclass rejects
/// any other, e.g. `estimated_completion`); the optional ones are left out when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateBuildStatus {
    /// Build id.
    pub build_id: String,
    /// Template id.
    pub template_id: String,
    /// `building`, `active` (succeeded) or `failed`.
    pub status: String,
    /// 0–100.
    pub progress: u8,
    /// Start time (RFC 3339, `Z`).
    pub started_at: String,
    /// What the build is doing (or failed at): `queued`, `bootstrap`, `packages`, `files`,
    /// `commands …`, `finalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// End time (RFC 3339, `Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Why it failed, naming the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Wall time of a finished build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_duration_ms: Option<u64>,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /v1/templates/build/{id}/logs?offset=N`: the log from byte `offset` on (JSON, never SSE:
/// the SDK cannot read SSE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateBuildLogs {
    /// Log text from the requested offset, newline separated.
    pub logs: String,
    /// Offset to ask for next.
    pub offset: u64,
    /// The build's status.
    pub status: String,
    /// True once the build finished and the whole log was sent.
    pub complete: bool,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/templates/files/upload-link`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UploadLinkRequest {
    /// The SDK's hash of the files (sha256 hex); names the upload in later COPY steps.
    pub files_hash: String,
    /// Size of the tar.gz to come, bytes.
    #[serde(default)]
    pub content_length: u64,
}

/// The reply to `POST /v1/templates/files/upload-link`. Only these keys (the SDK's dataclass
/// rejects others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadLinkResponse {
    /// True if the files are already here (no upload needed).
    pub present: bool,
    /// Where to `PUT` the raw tar.gz, without credentials (the URL carries a one-time token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// When the link stops working (RFC 3339, `Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The hash asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_hash: Option<String>,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One step of a HopX template build.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HopxBuildStep {
    /// `COPY`, `RUN`, `ENV`, `WORKDIR`, `USER` or `CMD`.
    #[serde(rename = "type")]
    pub kind: String,
    /// COPY: `["src1,src2", "/dest"]`; RUN: `["command"]`; ENV: `["KEY", "value"]`;
    /// WORKDIR: `["/dir"]`; USER: `["root"|"user"]`; CMD: `["command"]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// COPY: the uploaded files' hash.
    #[serde(default, rename = "filesHash", skip_serializing_if = "Option::is_none")]
    pub files_hash: Option<String>,
    /// Rebuild this step even if cached (the bootstrap is the only cached step here).
    #[serde(default, rename = "skipCache")]
    pub skip_cache: bool,
}

/// `POST /v1/templates/build` as the HopX SDK sends it. hutch builds Debian roots, so
/// `from_image` must name an image it can make from Debian packages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HopxBuildRequest {
    /// Template name.
    pub name: String,
    /// Base image: `debian:bookworm` (`debian:12`, `debian`), `python:3.11` (`python:3`,
    /// `python`) or `node:18` (`node`), optionally `-slim`/`-bookworm`.
    pub from_image: String,
    /// Build steps, in order.
    #[serde(default)]
    pub steps: Vec<HopxBuildStep>,
    /// Command started in the background when a sandbox is created.
    #[serde(default, rename = "startCmd")]
    pub start_cmd: Option<String>,
    /// Readiness check of the start command (kept, not enforced).
    #[serde(default, rename = "readyCmd")]
    #[schema(value_type = Option<Object>)]
    pub ready_cmd: Option<serde_json::Value>,
    /// Default CPUs.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Default memory, MiB.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Default disk, GiB.
    #[serde(default, rename = "diskGB")]
    pub disk_gb: Option<u64>,
    /// Rebuild the base instead of using the cached one.
    #[serde(default, rename = "skipCache")]
    pub skip_cache: bool,
    /// Replace an existing template of this name.
    #[serde(default)]
    pub update: bool,
    /// Ignored: the agent is part of hutch.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Refused when set: hutch pulls no images.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub registry_credentials: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_id_accepts_strings_and_numbers() {
        let r: CreateSandboxRequest = serde_json::from_str(r#"{"template_id": 7}"#).unwrap();
        assert_eq!(r.template_id.unwrap().as_key(), "7");
        let r: CreateSandboxRequest = serde_json::from_str(r#"{"template_id": "abc"}"#).unwrap();
        assert_eq!(r.template_id.unwrap().as_key(), "abc");
        assert!(serde_json::from_str::<CreateSandboxRequest>(r#"{"template_id": {}}"#).is_err());
    }

    #[test]
    fn token_fields_appear_only_when_set() {
        let s = SandboxObject {
            id: "a".into(),
            object: "sandbox".into(),
            status: SandboxStatus::Running,
            public_host: "http://x".into(),
            direct_url: "http://x".into(),
            preview_url: None,
            template_id: "1".into(),
            template_name: "t".into(),
            organization_id: 0,
            node_id: "local".into(),
            region: "local".into(),
            resources: ResourcesObject {
                vcpu: 1,
                memory_mb: 1,
                disk_mb: 1,
            },
            internet_access: true,
            live_mode: true,
            timeout_seconds: None,
            expires_at: None,
            created_at: None,
            auth_token: None,
            token_expires_at: None,
            request_id: String::new(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("auth_token").is_none());
        assert!(v["expires_at"].is_null(), "null, not missing");
        assert!(v["template_id"].is_string());
    }
}
