//! Forwarding one HTTP request — or a WebSocket upgrade — to an agent's unix socket or to a
//! service's TCP connection (preview URLs), streaming both bodies, without interpreting them.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

use super::agent_error;

/// Hop-by-hop headers, which belong to one connection and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Why a request did not get an answer from the agent.
pub(super) enum Failure {
    /// The socket could not be reached or the HTTP handshake failed: nothing was sent.
    Unreachable,
    /// The request was sent and the connection closed before an answer: it may have run.
    Dropped,
}

/// Who receives a forwarded request, and so which credentials it may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upstream {
    /// A sandbox agent: it trusts its socket, so the bearer token stays at the gateway.
    Agent,
    /// A user's service behind a preview URL: the request is the user's own, headers and all.
    Service,
}

pub(super) async fn to_agent(socket: &Path, req: Request) -> Result<Response, Failure> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        tracing::warn!(socket = %socket.display(), error = %e, "agent unreachable");
        Failure::Unreachable
    })?;
    over(stream, req, Upstream::Agent).await
}

/// Sends `req` over the connected `stream` as HTTP/1.1 and returns the answer with its body
/// still streaming; a `101 Switching Protocols` answer is joined to the client's upgraded
/// connection, byte for byte.
pub(super) async fn over<S>(stream: S, mut req: Request, to: Upstream) -> Result<Response, Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let upgrade = is_upgrade(&req);
    let client_upgrade = if upgrade {
        req.extensions_mut().remove::<OnUpgrade>()
    } else {
        None
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, ?to, "upstream handshake failed");
            Failure::Unreachable
        })?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let (mut parts, body) = req.into_parts();
    if !upgrade {
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
    }
    if to == Upstream::Agent {
        // The agent trusts its socket, not tokens; the bearer token stays at the gateway.
        parts.headers.remove(header::AUTHORIZATION);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(_) => {
            return Ok(agent_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "bad path",
            ))
        }
    };
    let outgoing = Request::from_parts(parts, body);

    let mut resp = sender.send_request(outgoing).await.map_err(|e| {
        tracing::warn!(error = %e, ?to, "upstream closed the connection mid-request");
        Failure::Dropped
    })?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
                    (Ok(c), Ok(a)) => (c, a),
                    _ => return,
                };
                let mut client = TokioIo::new(client);
                let mut agent = TokioIo::new(agent);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
            });
        }
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}
