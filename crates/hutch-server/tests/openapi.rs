//! The served OpenAPI document against the routers it describes, without sandboxes: every
//! documented operation is routed, every routed operation is documented, in both halves of the
//! API (the control plane in `app`, the agent behind the gateway), and the shapes clients rely on
//! are there.
//!
//! Routing is probed with a `route_layer` that answers before any handler runs, naming the
//! route template that matched. It runs only when a path matched, so a request that reaches the
//! fallback carries no probe header; axum also runs it around a path's "method not allowed"
//! answer, which it then marks with an `Allow` header, so "probe header and no `Allow`" means
//! path and method matched.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hutch_manager::{Manager, ManagerConfig, Templates};
use hutch_runtime::{Backend, ResourceUsage, RuntimeError, RuntimeStatus, SandboxSpec};
use hutch_server::{app, openapi_document, AppState, ServerConfig};
use hutch_store::Store;
use hutch_types::{AgentBoot, SandboxId};
use serde_json::Value;
use tower::ServiceExt;

/// A backend with no sandboxes: the tests never reach it (the probe answers first), but the
/// server's state needs one.
struct NoBackend;

impl Backend for NoBackend {
    fn name(&self) -> &'static str {
        "none"
    }
    fn create(&self, spec: &SandboxSpec) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(spec.id.clone()))
    }
    fn adopt(&self, warm: &SandboxId, _: &SandboxSpec) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(warm.clone()))
    }
    fn start(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn stop(&self, id: &SandboxId, _: Duration) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn pause(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn resume(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn kill(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn usage(&self, id: &SandboxId) -> Result<ResourceUsage, RuntimeError> {
        Err(RuntimeError::NotFound(id.clone()))
    }
    fn agent_socket(&self, _: &SandboxId) -> PathBuf {
        PathBuf::from("/nonexistent/agent.sock")
    }
    fn list(&self) -> Result<Vec<SandboxId>, RuntimeError> {
        Ok(Vec::new())
    }
}

fn server() -> Router {
    let cfg = ManagerConfig::new(PathBuf::from("/nonexistent/hutch-openapi-test"));
    let manager = Manager::new(
        cfg,
        Store::open_in_memory().unwrap(),
        Arc::new(NoBackend),
        Templates::from_list(Vec::new()),
    );
    app(Arc::new(AppState {
        manager,
        config: ServerConfig {
            api_key: "test-key".into(),
            public_url: "http://127.0.0.1:1".into(),
            loopback_url: "http://127.0.0.1:1".into(),
        },
    }))
}

fn agent() -> Router {
    let state = hutch_agent::state::AgentState::new(AgentBoot::default());
    hutch_agent::api::router(Arc::new(state))
}

const PROBE: &str = "x-probe-matched";

/// Answers for every matched route without running it, naming the template that matched.
async fn probe(req: Request, _: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    ([(PROBE, matched)], "probed").into_response()
}

fn probed(router: Router) -> Router {
    router.route_layer(from_fn(probe))
}

/// The route template `method path` matched in `router`, if any.
async fn matched(router: &Router, method: &Method, path: &str) -> Option<String> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    if resp.headers().contains_key(header::ALLOW) {
        return None;
    }
    resp.headers()
        .get(PROBE)
        .map(|v| v.to_str().unwrap().to_string())
}

/// A concrete path for a template: `{x}` → `x1`, `{*rest}` → `a/b`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) if p.starts_with('*') => "a/b".to_string(),
                Some(p) => format!("{p}1"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (METHOD, path) a document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The paths registered in a router, read from its `Debug` output (axum has no other way to
/// list them): `Router { path_router: PathRouter { …, node: Node { paths: {RouteId(0):
/// "/health", …} } }, fallback_router: … }`.
fn registered_paths(router: &Router) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let routes = text
        .split("fallback_router")
        .next()
        .expect("Router's Debug output has changed; update registered_paths");
    let paths: BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|piece| piece.split_once("): \""))
        .filter_map(|(_, rest)| rest.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(
        paths.contains("/health"),
        "Router's Debug output has changed; update registered_paths: {paths:?}"
    );
    paths
}

/// Routes registered as catch-alls for every method, with the one path documenting them:
/// OpenAPI has no wildcard or "any method", so these are described once (GET and POST) with a
/// description saying so.
const CATCH_ALLS: &[(&str, &str)] = &[
    ("/desktop", "/desktop/{path}"),
    ("/desktop/{*rest}", "/desktop/{path}"),
];

/// Checks both directions for one router: each of `documented` is routed to its own template,
/// and each routed (method, path) is in `documented`.
async fn check_router(name: &str, router: Router, documented: &BTreeSet<(String, String)>) {
    let paths = registered_paths(&router);
    let router = probed(router);
    for (method, path) in documented {
        let m: Method = method.parse().unwrap();
        let got = matched(&router, &m, &concrete(path)).await;
        let expected: Vec<&str> = CATCH_ALLS
            .iter()
            .filter(|(_, doc)| doc == path)
            .map(|(route, _)| *route)
            .collect();
        match got {
            Some(t) if t == *path || expected.contains(&t.as_str()) => {}
            other => panic!("{name}: documented {method} {path} is routed to {other:?}"),
        }
    }
    for path in &paths {
        if let Some((_, doc)) = CATCH_ALLS.iter().find(|(route, _)| route == path) {
            assert!(
                documented.iter().any(|(_, p)| p == doc),
                "{name}: catch-all {path} is not documented as {doc}"
            );
            continue;
        }
        let mut any = false;
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"] {
            let m: Method = method.parse().unwrap();
            if matched(&router, &m, &concrete(path)).await.as_deref() == Some(path) {
                any = true;
                assert!(
                    documented.contains(&(method.to_string(), path.clone())),
                    "{name}: {method} {path} is routed but not documented"
                );
            }
        }
        assert!(any, "{name}: {path} is registered but answers no method");
    }
}

async fn served_document(router: &Router) -> Value {
    let req = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            &doc["components"]["schemas"][name]
        }
        None => v,
    }
}

#[tokio::test]
async fn document_and_routes_agree() {
    let server = server();
    let doc = served_document(&server).await;
    assert_eq!(
        doc,
        serde_json::to_value(openapi_document()).unwrap(),
        "/openapi.json differs from openapi_document()"
    );

    let agent_doc = serde_json::to_value(hutch_agent::api::openapi()).unwrap();
    let agent_ops = operations(&agent_doc);
    let all_ops = operations(&doc);
    assert!(agent_ops.len() > 50, "{agent_ops:?}");
    let missing: Vec<_> = agent_ops.difference(&all_ops).collect();
    assert!(
        missing.is_empty(),
        "agent operations not served: {missing:?}"
    );

    // Both halves answer GET /health (the server, or with a sandbox token the agent): the
    // control plane's routes are everything documented that the agent does not define, plus
    // the shared ones.
    let shared: BTreeSet<_> = agent_ops
        .iter()
        .filter(|(m, p)| m == "GET" && p == "/health")
        .cloned()
        .collect();
    assert_eq!(shared.len(), 1);
    let control: BTreeSet<_> = all_ops
        .difference(&agent_ops)
        .cloned()
        .chain(shared.iter().cloned())
        .collect();
    for v1 in [
        "/v1/sandboxes",
        "/v1/sandboxes/{id}",
        "/v1/templates",
        "/openapi.json",
    ] {
        assert!(control.iter().any(|(_, p)| p == v1), "{v1} not documented");
    }

    check_router("server", server.clone(), &control).await;
    check_router("agent", agent(), &agent_ops).await;

    // Agent-only paths are not server routes: they reach the gateway, which without a token
    // answers 401 INVALID_TOKEN in the agent's error shape.
    let probed_server = probed(server.clone());
    for (method, path) in agent_ops.difference(&shared) {
        let m: Method = method.parse().unwrap();
        let uri = concrete(path);
        assert_eq!(
            matched(&probed_server, &m, &uri).await,
            None,
            "{method} {path} is a server route"
        );
        let req = Request::builder()
            .method(m)
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let resp = server.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["code"], "INVALID_TOKEN", "{method} {path}: {body}");
    }

    // Agent operations are served as the agent documents them, except the shared one.
    for (method, path) in agent_ops.difference(&shared) {
        let m = method.to_ascii_lowercase();
        assert_eq!(
            doc["paths"][path][&m], agent_doc["paths"][path][&m],
            "{method} {path} changed in the merge"
        );
    }
}

#[tokio::test]
async fn document_shapes() {
    let doc = served_document(&server()).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "hutch");
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("Authorization: Bearer <auth_token>"));

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    let sandbox = &doc["components"]["schemas"]["SandboxObject"];
    assert_eq!(sandbox["properties"]["template_id"]["type"], "string");
    let resources = resolve(&doc, &sandbox["properties"]["resources"]);
    let required: BTreeSet<&str> = resources["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for key in ["vcpu", "memory_mb", "disk_mb"] {
        assert!(
            resources["properties"][key]["type"] == "integer" && required.contains(key),
            "resources.{key}: {resources}"
        );
    }
    let execute = resolve(
        &doc,
        &doc["paths"]["/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"],
    );
    assert_eq!(execute["properties"]["code"]["type"], "string");
    let agent_error = &doc["components"]["schemas"]["AgentError"];
    assert_eq!(agent_error["properties"]["error"]["type"], "string");

    // Operation ids are unique (client generators name methods after them); every operation
    // names a tag the document declares and the way it is authenticated.
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let where_ = format!("{m} {path}");
            let id = op["operationId"].as_str().unwrap().to_string();
            if let Some(other) = ids.insert(id.clone(), where_.clone()) {
                panic!("operationId {id} is used by {other} and {where_}");
            }
            for t in op["tags"].as_array().unwrap() {
                assert!(tags.contains(t.as_str().unwrap()), "{where_}: tag {t}");
            }
            // Control-plane operations that need credentials take the API key (a few are open
            // on purpose: this document, upload links carrying their own token); every agent
            // operation takes the sandbox token.
            let security = op["security"].to_string();
            if path.starts_with("/v1/") {
                assert!(
                    op["security"].is_null() || security.contains("api_key"),
                    "{where_}: {security}"
                );
            } else if path != "/openapi.json" {
                assert!(security.contains("bearer"), "{where_}: {security}");
            }
        }
    }

    // GET /health keeps the control plane's description and gains the agent's.
    let health = &doc["paths"]["/health"]["get"];
    assert_eq!(
        health["summary"],
        "Health of the server, or of a sandbox's agent."
    );
    let text = health["description"].as_str().unwrap();
    assert!(
        text.starts_with("Without a bearer token: the server's health"),
        "{text}"
    );
    assert!(text.contains("Health of the sandbox's agent."), "{text}");
    assert_eq!(health["operationId"], "health");
    assert_eq!(
        health["security"],
        serde_json::json!([{}, {"bearer": []}]),
        "either no credentials or the sandbox token"
    );
    let schema = &health["responses"]["200"]["content"]["application/json"]["schema"];
    let one_of = schema["oneOf"].as_array().unwrap();
    assert_eq!(one_of[0]["$ref"], "#/components/schemas/HealthObject");
    assert_eq!(one_of[1]["type"], "object");
}
