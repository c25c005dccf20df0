//! The OpenAPI document served at `/openapi.json`: the whole API on this port. Both halves are
//! generated from the annotated handlers their routers are built from (so routes and document
//! cannot drift): the control plane from `http/`, the sandbox agent from
//! [`hutch_agent::api::openapi`], whose paths the gateway forwards unchanged.

use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::Json;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, RefOr};

/// Where `GET /openapi.json` finds the document: filled in by [`crate::app`] once the router the
/// document describes is built, so the handler serves exactly that router's description.
pub(crate) type DocumentSlot = Arc<OnceLock<OpenApi>>;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "openapi_document",
    responses((status = 200, body = Object, description = "This OpenAPI 3.1 document")))]
pub(crate) async fn document(Extension(slot): Extension<DocumentSlot>) -> Json<OpenApi> {
    Json(slot.get_or_init(crate::openapi_document).clone())
}

/// The document's description: how the two halves of the API are reached and authenticated.
const DESCRIPTION: &str = "Self-hosted sandboxes speaking the HopX API, control plane and \
    sandbox agents on one host and port.\n\n\
    **Control plane** — `/v1/*` (tags `sandboxes`, `lifecycle`, `templates`, `sessions`): \
    authenticated by \
    the server's API key, in `X-API-Key` or as `Authorization: Bearer <API key>`.\n\n\
    **Sandbox agent** — every other path (tags `execute`, `contexts`, `commands`, `processes`, \
    `files`, `env`, `terminal`, `metrics`, `cache`, `artifacts`, `desktop`, `internal`): needs the \
    sandbox's token, `Authorization: Bearer <auth_token>` (from the create or token-refresh \
    reply). The token, not the path, picks the sandbox; the gateway forwards the request \
    unchanged to that sandbox's agent. Besides each operation's own answers, the gateway may \
    answer an agent path with 401 `INVALID_TOKEN` (missing, unknown or expired token), 409 \
    `SANDBOX_PAUSED` / `SANDBOX_STOPPED` / `SANDBOX_NOT_READY`, 410 (the sandbox was killed \
    during the call) or 502 (the agent failed). Agent errors are `{error, message, code, \
    details, timestamp}` with `error` a string (`AgentError`); control-plane errors have \
    `error` as an object (`ErrorBody`).\n\n\
    `GET /health` is both: without a bearer token the server's health, with a sandbox token \
    that sandbox's agent's.\n\n\
    **MCP** — `/mcp` (tag `mcp`): the same tools for AI agents over MCP's streamable HTTP \
    transport; the API key, as on the control plane.\n\n\
    **Preview URLs** — not paths of this document: a request whose `Host` is \
    `{port}-{sandbox_id}.localhost[:any port]` (or `{port}-{sandbox_id}.<public host>`) is \
    forwarded, whatever its path, to that port inside the running sandbox, with no \
    credentials; the sandbox object's `preview_url` is the pattern. hutch itself answers only \
    404 `RESOURCE_NOT_FOUND` (no such sandbox), 409 `SANDBOX_PAUSED` / `SANDBOX_STOPPED` and \
    502 `PORT_NOT_LISTENING` / `UPSTREAM_FAILED`, in the control-plane shape.";

/// Control-plane tags; the agent's come with its document.
const TAGS: &[(&str, &str)] = &[
    (
        "health",
        "Health of the server, or with a sandbox token of that sandbox's agent.",
    ),
    (
        "sandboxes",
        "Create, list, get and kill sandboxes. API key.",
    ),
    (
        "lifecycle",
        "Pause, resume, stop, start, timeouts and agent tokens of a sandbox. API key.",
    ),
    (
        "templates",
        "Templates sandboxes are created from. API key.",
    ),
    (
        "sessions",
        "Persistent Python execution contexts whose state outlives sandboxes, their history, \
         statistics and artifacts (hutch's extension). API key.",
    ),
    (
        "mcp",
        "The tools for AI agents over MCP (streamable HTTP); a sandbox per MCP session. API key.",
    ),
    ("meta", "This document."),
];

/// The whole document: the control plane's `paths` (from the server's router) with the agent's
/// merged in, title, tags and the two authentication schemes.
pub(crate) fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("hutch")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .build();
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    merge_agent(&mut doc, hutch_agent::api::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "The server's API key (control plane).",
        ))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "Control plane (`/v1/*`) and `/mcp`: the API key. Every other path: the \
                     sandbox's `auth_token`, which also picks the sandbox.",
                ))
                .build(),
        ),
    );
    doc
}

/// Adds the agent's paths, schemas and tags to `doc`. Agent paths are kept as they are (the
/// gateway serves them on this port, unchanged); an operation both halves define (`GET
/// /health`) keeps the control plane's and gains the agent's behaviour, so neither description
/// is lost. Tags both define keep the control plane's description.
fn merge_agent(doc: &mut OpenApi, agent: OpenApi) {
    for (path, item) in agent.paths.paths {
        match doc.paths.paths.get_mut(&path) {
            None => {
                doc.paths.paths.insert(path, item);
            }
            Some(ours) => merge_item(ours, item),
        }
    }
    if let Some(theirs) = agent.components {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in theirs.schemas {
            components.schemas.entry(name).or_insert(schema);
        }
    }
    let tags = doc.tags.get_or_insert_with(Vec::new);
    for tag in agent.tags.unwrap_or_default() {
        if !tags.iter().any(|t| t.name == tag.name) {
            tags.push(tag);
        }
    }
}

/// Both halves' operations on one path: each method's pair is combined, the rest kept.
fn merge_item(ours: &mut PathItem, theirs: PathItem) {
    let pairs = [
        (&mut ours.get, theirs.get),
        (&mut ours.put, theirs.put),
        (&mut ours.post, theirs.post),
        (&mut ours.delete, theirs.delete),
        (&mut ours.options, theirs.options),
        (&mut ours.head, theirs.head),
        (&mut ours.patch, theirs.patch),
        (&mut ours.trace, theirs.trace),
    ];
    for (slot, agent) in pairs {
        match (slot.as_mut(), agent) {
            (Some(op), Some(agent)) => merge_operation(op, agent),
            (None, agent @ Some(_)) => *slot = agent,
            (_, None) => {}
        }
    }
}

/// One operation served by the control plane without a sandbox token and by the agent with
/// one: the control plane's id and summary stay, the agent's behaviour is added to the
/// description, the responses of both are offered, and either authentication (none, or the
/// sandbox token) is accepted.
fn merge_operation(op: &mut Operation, agent: Operation) {
    let mut agent_text = agent.summary.unwrap_or_default();
    if let Some(more) = agent.description.filter(|d| !d.is_empty()) {
        agent_text = format!("{agent_text}\n\n{more}");
    }
    let note = format!(
        "**With `Authorization: Bearer <sandbox auth_token>`** the request goes to that \
         sandbox's agent instead: {agent_text}"
    );
    op.description = Some(match op.description.take().filter(|d| !d.is_empty()) {
        Some(ours) => format!("{ours}\n\n{note}"),
        None => note,
    });
    for (status, response) in agent.responses.responses {
        match op.responses.responses.get_mut(&status) {
            None => {
                op.responses.responses.insert(status, response);
            }
            Some(RefOr::T(ours)) => {
                if let RefOr::T(theirs) = response {
                    merge_response(ours, theirs);
                }
            }
            Some(RefOr::Ref(_)) => {}
        }
    }
    let security = op.security.get_or_insert_with(Vec::new);
    if security.is_empty() {
        // No requirement of its own meant "open"; say so explicitly next to the agent's.
        security.push(SecurityRequirement::default());
    }
    for requirement in agent.security.unwrap_or_default() {
        if !security.contains(&requirement) {
            security.push(requirement);
        }
    }
    let tags = op.tags.get_or_insert_with(Vec::new);
    for tag in agent.tags.unwrap_or_default() {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
}

/// The same status from both: descriptions joined, and per media type either body
/// (`oneOf`) when they differ.
fn merge_response(ours: &mut Response, theirs: Response) {
    let server = match ours.description.trim_end_matches('.') {
        "" => "the first body",
        text => text,
    };
    ours.description = format!(
        "Server (no sandbox token): {server}. Agent (sandbox token): {}",
        theirs.description
    );
    for (media, content) in theirs.content {
        match ours.content.get_mut(&media) {
            None => {
                ours.content.insert(media, content);
            }
            Some(existing) => {
                existing.schema = match (existing.schema.take(), content.schema) {
                    (Some(a), Some(b)) if a != b => Some(RefOr::T(Schema::OneOf(
                        OneOfBuilder::new().item(a).item(b).build(),
                    ))),
                    (a, b) => a.or(b),
                };
            }
        }
    }
}
