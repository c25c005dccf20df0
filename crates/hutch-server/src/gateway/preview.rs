//! Preview URLs: `http://{port}-{sandbox}.localhost:<server port>/` reaches whatever listens on
//! `port` inside the sandbox — even on the sandbox's own 127.0.0.1.
//!
//! Routing is by the `Host` header alone, before any other route: a request for
//! `8000-abc.localhost:7770/v1/sandboxes` belongs to the sandbox's app, not to the control
//! plane. The connection is made inside the sandbox's network namespace (the backend's
//! `connect_tcp`), so nothing in the sandbox has to listen on an address the host can reach and
//! the sandbox still cannot reach the host.
//!
//! Like E2B's public URLs, preview requests carry no API key: the sandbox id in the name is the
//! capability. Only running sandboxes are served. A paused one answers 409 at once instead of
//! being resumed: the request is unauthenticated, and anyone holding a link must not be able to
//! wake a sandbox its owner paused (and so spend its resources). Errors use the control-plane
//! shape, since no agent is involved.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hutch_manager::ManagerError;
use hutch_types::{SandboxId, SandboxStatus};
use serde_json::json;

use super::proxy::{self, Failure, Upstream};
use crate::{ApiError, AppState};

/// How long connecting to the service may take. On the sandbox's loopback a connection is
/// accepted or refused at once; only a full backlog (or a frozen process) makes it wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The suffix every preview host may use, whatever the server's public URL: browsers and curl
/// resolve `*.localhost` to the loopback themselves.
const LOCAL_SUFFIX: &str = "localhost";

/// A preview request's destination, as named by its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The port inside the sandbox.
    pub port: u16,
    /// The sandbox id as written (checked later: an impossible id is simply not found).
    pub sandbox: String,
}

/// Reads `{port}-{sandbox}.localhost[:any port]` or `{port}-{sandbox}.<public host>[:port]`.
/// Anything else (the server's own name, an IP address, another subdomain) is not a preview
/// host and gets `None`. Host names are case-insensitive; sandbox ids are lower-case.
pub(crate) fn parse_host(host: &str, public_host: Option<&str>) -> Option<Target> {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host.as_str(),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let (label, domain) = name.split_once('.')?;
    let public = public_host
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty());
    if domain != LOCAL_SUFFIX && public.as_deref() != Some(domain) {
        return None;
    }
    let (port, sandbox) = label.split_once('-')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if sandbox.is_empty() {
        return None;
    }
    Some(Target {
        port,
        sandbox: sandbox.to_string(),
    })
}

/// The host part of a base URL (`http://host:port/prefix` → `host`), when it is a name that
/// can carry subdomains: IP addresses cannot, so they give `None`.
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.starts_with('[') {
        return None; // an IPv6 literal
    }
    let name = authority.split(':').next()?;
    let is_ip = name.parse::<std::net::Ipv4Addr>().is_ok();
    (!name.is_empty() && !is_ip).then_some(name)
}

/// The `preview_url` of a sandbox object: the server's public URL with `{port}-{id}.` in front
/// of its host, and the literal `{port}` for clients to fill in. When the public URL names an
/// IP address (the default, `http://127.0.0.1:7770`), the host becomes `localhost`, which
/// browsers and curl resolve to the loopback by themselves; a real name needs a wildcard DNS
/// record (`*.name`) to work from other machines.
pub(crate) fn preview_url(public_url: &str, id: &str) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("http", public_url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            format!(":{p}")
        }
        _ => String::new(),
    };
    let host = match url_host(public_url) {
        Some(h) if !h.eq_ignore_ascii_case(LOCAL_SUFFIX) => h,
        _ => LOCAL_SUFFIX,
    };
    format!("{scheme}://{{port}}-{id}.{host}{port}/")
}

/// The host a request was sent to (`Host`, else the URI's authority as HTTP/2 carries it).
fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

/// Middleware in front of every route: preview hosts are forwarded to the sandbox, everything
/// else goes on to the control plane and the gateway.
pub(crate) async fn intercept(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let target =
        request_host(&req).and_then(|h| parse_host(&h, url_host(&state.config.public_url)));
    match target {
        Some(target) => forward(&state, target, req).await,
        None => next.run(req).await,
    }
}

async fn forward(state: &AppState, target: Target, mut req: Request) -> Response {
    let Ok(id) = SandboxId::parse(&target.sandbox) else {
        return ApiError::not_found(format!("sandbox {} not found", target.sandbox))
            .into_response();
    };
    let record = match state.manager.get(&id) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if record.status != SandboxStatus::Running {
        let code = match record.status {
            SandboxStatus::Paused => "SANDBOX_PAUSED",
            SandboxStatus::Stopped => "SANDBOX_STOPPED",
            _ => "SANDBOX_NOT_READY",
        };
        return ApiError::new(
            StatusCode::CONFLICT,
            code,
            format!(
                "sandbox {id} is {}; preview URLs serve running sandboxes only (resume or start it first)",
                record.status
            ),
        )
        .with_details(json!({ "status": record.status.as_str(), "port": target.port }))
        .into_response();
    }
    let stream = match state
        .manager
        .connect_port(&id, target.port, CONNECT_TIMEOUT)
        .await
    {
        Ok(s) => s,
        Err(ManagerError::PortUnreachable { port, source, .. }) => {
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "PORT_NOT_LISTENING",
                format!(
                    "nothing is listening on port {port} in sandbox {id} ({source}); start a \
                     server on that port inside the sandbox (any address, 127.0.0.1 included)"
                ),
            )
            .with_details(json!({ "port": port }))
            .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let stream = match stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the preview connection");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "cannot register the preview connection",
            )
            .into_response();
        }
    };
    let _ = stream.set_nodelay(true);
    add_forwarded(&mut req, state);
    match proxy::over(stream, req, Upstream::Service).await {
        Ok(resp) => resp,
        Err(failure) => {
            let what = match failure {
                Failure::Unreachable => "did not speak HTTP/1.1",
                Failure::Dropped => "closed the connection before answering",
            };
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_FAILED",
                format!("the service on port {} in sandbox {id} {what}", target.port),
            )
            .with_details(json!({ "port": target.port }))
            .into_response()
        }
    }
}

/// `X-Forwarded-Host` and `X-Forwarded-Proto`, so apps that build absolute URLs use the preview
/// URL. `Host` itself is kept as the client sent it, as reverse proxies do.
fn add_forwarded(req: &mut Request, state: &AppState) {
    let proto = if state.config.public_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let host = req.headers().get(header::HOST).cloned();
    let headers = req.headers_mut();
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16, sandbox: &str) -> Option<Target> {
        Some(Target {
            port,
            sandbox: sandbox.into(),
        })
    }

    #[test]
    fn preview_hosts_parse() {
        assert_eq!(parse_host("8000-abc.localhost:7770", None), t(8000, "abc"));
        assert_eq!(parse_host("8000-abc.localhost", None), t(8000, "abc"));
        assert_eq!(parse_host("8000-abc.localhost.:1", None), t(8000, "abc"));
        assert_eq!(
            parse_host("5000-Sb-X1.LocalHost:80", None),
            t(5000, "sb-x1")
        );
        assert_eq!(parse_host("65535-a-b-c.localhost", None), t(65535, "a-b-c"));
        assert_eq!(
            parse_host("3000-abc.sandbox.example.com", Some("sandbox.example.com")),
            t(3000, "abc")
        );
        assert_eq!(
            parse_host(
                "3000-abc.SANDBOX.example.com:443",
                Some("sandbox.example.com")
            ),
            t(3000, "abc")
        );
    }

    #[test]
    fn other_hosts_do_not() {
        for h in [
            "127.0.0.1:7770",
            "localhost:7770",
            "localhost",
            "abc.localhost",
            "-abc.localhost",
            "8000-.localhost",
            "0-abc.localhost",
            "65536-abc.localhost",
            "123456-abc.localhost",
            "80x0-abc.localhost",
            "8000-abc.example.com",
            "8000-abc.localhost:port",
            "8000-abc.sub.localhost",
            "",
            "[::1]:7770",
        ] {
            assert_eq!(parse_host(h, None), None, "{h:?}");
        }
        assert_eq!(
            parse_host("8000-abc.other.example.com", Some("example.com")),
            None
        );
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://127.0.0.1:7770"), None);
        assert_eq!(url_host("http://[::1]:7770"), None);
        assert_eq!(url_host("http://localhost:7770/x"), Some("localhost"));
        assert_eq!(url_host("https://sb.example.com"), Some("sb.example.com"));
        assert_eq!(url_host("http://u:p@h.example:1/"), Some("h.example"));
    }

    #[test]
    fn preview_urls() {
        assert_eq!(
            preview_url("http://127.0.0.1:7770", "abc"),
            "http://{port}-abc.localhost:7770/"
        );
        assert_eq!(
            preview_url("http://localhost:9/api", "abc"),
            "http://{port}-abc.localhost:9/"
        );
        assert_eq!(
            preview_url("https://sb.example.com", "abc"),
            "https://{port}-abc.sb.example.com/"
        );
        assert_eq!(
            preview_url("http://[::1]:7770", "abc"),
            "http://{port}-abc.localhost:7770/"
        );
    }

    #[test]
    fn preview_urls_route_back() {
        for public in ["http://127.0.0.1:7770", "https://sb.example.com:8443"] {
            let url = preview_url(public, "sb1").replace("{port}", "8080");
            let host = url.split("://").nth(1).unwrap().trim_end_matches('/');
            assert_eq!(parse_host(host, url_host(public)), t(8080, "sb1"), "{url}");
        }
    }
}
