//! The HopX agent API (`spec/hopx-protocol.md` §7–§10), one module per resource.
//!
//! Each module builds its routes with `utoipa_axum`'s [`OpenApiRouter`] from handlers annotated
//! with `#[utoipa::path]`, so the axum routes and the OpenAPI description come out of the same
//! code: [`routes`] assembles both, [`router`] serves one half and [`openapi`] returns the other.

mod artifacts;
mod boot;
mod cache;
mod commands;
mod desktop;
mod env;
mod error;
mod execute;
mod files;
mod health;
mod metrics;
mod processes;
mod sessions;
mod terminal;

use std::sync::Arc;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;

use crate::state::AgentState;

/// Shared state as handlers see it.
pub type State = Arc<AgentState>;

/// Every tag the agent's operations use, with what it covers. Each says how agent calls are
/// authenticated, since a reader of the merged document meets the agent paths by tag.
const TAGS: &[(&str, &str)] = &[
    ("health", "Liveness of the sandbox's agent."),
    (
        "execute",
        "Run code (Python, JavaScript, Bash, Go): synchronously, streamed over a WebSocket, or \
         asynchronously with a signed callback; history and statistics.",
    ),
    (
        "artifacts",
        "Files executions produced (figures, images, data files): list, download, remove.",
    ),
    (
        "contexts",
        "Independent interpreter contexts (kernels) that keep state between executions.",
    ),
    (
        "commands",
        "Run a command to completion and read its output.",
    ),
    (
        "processes",
        "Background jobs (code and commands), the sandbox's process list, and kills.",
    ),
    (
        "files",
        "The sandbox's files: read, write, upload, download, list, remove, mkdir, watch.",
    ),
    ("env", "The sandbox's custom environment variables."),
    (
        "terminal",
        "An interactive shell on a PTY over a WebSocket.",
    ),
    (
        "metrics",
        "Agent information, request and system metrics, Prometheus exposition.",
    ),
    (
        "cache",
        "The execution result cache and the compilation caches.",
    ),
    (
        "desktop",
        "Desktop automation (VNC, screenshots, input): not available in hutch sandboxes.",
    ),
    (
        "internal",
        "Calls between hutch's control plane and the agent; not part of the HopX API.",
    ),
];

/// How every agent operation is authenticated, appended to each tag's description.
const AUTH_NOTE: &str = "Agent API: reached through the gateway with \
                         `Authorization: Bearer <sandbox auth_token>`.";

/// The document the agent's routes are added to: title, the `bearer` scheme they all name, and
/// the tags.
fn base_document() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("hutch-agent")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HopX agent API of one hutch sandbox. Clients reach it through the hutch \
                     server, whose gateway picks the sandbox by the bearer token.",
                ))
                .build(),
        )
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(format!("{description} {AUTH_NOTE}")))
                .build()
        })))
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The sandbox's `auth_token`."))
                    .build(),
            ),
        );
    doc
}

/// Every agent route with its description, its fallback and its middleware: the one place both
/// [`router`] and [`openapi`] come from, so the served routes and the document cannot drift.
fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::with_openapi(base_document())
        .merge(health::router())
        .merge(boot::router())
        .merge(commands::router())
        .merge(execute::router())
        .merge(artifacts::router())
        .merge(sessions::router())
        .merge(files::router())
        .merge(env::router())
        .merge(processes::router())
        .merge(terminal::router())
        .merge(metrics::router())
        .merge(cache::router())
        .merge(desktop::router())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(crate::metrics::track))
}

/// Every agent route.
pub fn router(state: State) -> Router {
    routes().split_for_parts().0.with_state(state)
}

/// The OpenAPI description of every agent route (the server merges it into `/openapi.json`).
pub fn openapi() -> OpenApi {
    routes().into_openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/info` advertises endpoints by hand; each must be a documented (so routed) operation.
    #[test]
    fn info_endpoints_are_documented() {
        let doc = openapi();
        for (name, endpoint) in metrics::ENDPOINTS {
            let (method, path) = endpoint.split_once(' ').unwrap();
            let item = doc
                .paths
                .paths
                .get(path)
                .unwrap_or_else(|| panic!("{name}: {path} is not documented"));
            let op = match method {
                "GET" => &item.get,
                "POST" => &item.post,
                other => panic!("{name}: unexpected method {other}"),
            };
            assert!(op.is_some(), "{name}: {endpoint} is not documented");
        }
    }

    /// Every operation names the bearer scheme and one of the declared tags.
    #[test]
    fn operations_have_security_and_known_tags() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let tags: Vec<&str> = TAGS.iter().map(|(t, _)| *t).collect();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{method} {path}"
                );
                let op_tags = op["tags"].as_array().unwrap();
                assert!(
                    op_tags.len() == 1 && tags.contains(&op_tags[0].as_str().unwrap()),
                    "{method} {path}: {op_tags:?}"
                );
            }
        }
    }
}
