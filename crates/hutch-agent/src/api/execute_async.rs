//! `POST /execute/async` (`spec` §8.2): answers at once with an execution id, runs the code in
//! the background, then POSTs the result to `callback_url` with the caller's headers,
//! `X-HOPX-Timestamp: <unix seconds>` and, when a secret was given,
//! `X-HOPX-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. Plain `http://` only.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderName, HeaderValue, Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::super::error::AgentError;
use super::super::{ApiError, State};
use super::{kernel_error, outcome_body, ExecuteBody};
use crate::kernels::RunStatus;
use crate::process::lang::random_hex;

/// `timeout` when the request gives none (the SDK's default for `run_code_async`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Per attempt: connecting, and waiting for the callback's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at delivering the callback (on connection errors and 5xx answers).
const ATTEMPTS: u32 = 3;

pub(super) fn router() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(start))
}

/// Run code in the background and POST the result to a callback.
///
/// Answers at once with an `execution_id`. When the run ends, the result (the fields of a
/// `POST /execute` reply, `status` being `completed`, `failed` or `timeout`) is POSTed as JSON to
/// `callback_url` with the given `callback_headers`, `X-HOPX-Timestamp: <unix seconds>` and,
/// with a `callback_signature_secret`, `X-HOPX-Signature: sha256=<hex HMAC-SHA256 of the
/// body>`. Delivery is tried three times. Plain `http://` callbacks only.
#[utoipa::path(post, path = "/execute/async", tag = "execute", operation_id = "execute_async",
    request_body = ExecuteBody,
    responses(
        (status = 200, body = Object, description = "`execution_id`, `status` (`queued`), \
            `callback_url`, `message`, `timestamp`"),
        (status = 400, body = AgentError, description = "Invalid body, unknown language, or a \
            missing or unusable `callback_url`"),
    ),
    security(("bearer" = [])))]
async fn start(Extract(state): Extract<State>, body: Bytes) -> Response {
    let req = match ExecuteBody::parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut spec = match req.spec(DEFAULT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(url) = req.callback_url.clone().filter(|u| !u.trim().is_empty()) else {
        return ApiError::invalid("`callback_url` is required").into_response();
    };
    let uri = match parse_callback(&url) {
        Ok(u) => u,
        Err(message) => return ApiError::invalid(message).into_response(),
    };
    let execution_id = format!("exec_{}", random_hex(8));
    spec.execution_id = Some(execution_id.clone());
    let headers = req.callback_headers.clone().unwrap_or_default();
    let secret = req
        .callback_signature_secret
        .clone()
        .filter(|s| !s.is_empty());
    let id = execution_id.clone();
    tokio::spawn(async move {
        // Not cancelled when this request ends: that is the point of async execution.
        let cancel = tokio_util::sync::CancellationToken::new();
        let kernels = &state.kernels;
        let result = kernels.execute(&state, spec, None, cancel).await;
        let mut payload = match result {
            Ok(outcome) => {
                let status = match outcome.status {
                    _ if outcome.success() => "completed",
                    RunStatus::TimedOut => "timeout",
                    _ => "failed",
                };
                let mut body = outcome_body(&outcome);
                body["status"] = json!(status);
                body
            }
            Err(e) => {
                let e = kernel_error(e);
                json!({"status": "failed", "success": false, "error": e.message, "code": e.code,
                       "stdout": "", "stderr": e.message, "exit_code": 1, "execution_time": 0.0})
            }
        };
        payload["execution_id"] = json!(id);
        payload["timestamp"] = json!(hutch_types::now_rfc3339());
        deliver(&uri, &headers, secret.as_deref(), payload).await;
    });
    Json(json!({
        "execution_id": execution_id,
        "status": "queued",
        "callback_url": url,
        "message": "Execution started; the result will be POSTed to the callback URL",
        "timestamp": hutch_types::now_rfc3339(),
    }))
    .into_response()
}

fn parse_callback(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid callback_url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "callback_url scheme {other:?} is not supported by this agent; use http://"
            ))
        }
        None => {
            return Err(format!(
                "callback_url {url:?} is not an absolute http:// URL"
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("callback_url {url:?} has no host"));
    }
    Ok(uri)
}

/// `sha256=<hex>` over `body`.
fn signature(secret: &str, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

async fn deliver(
    uri: &Uri,
    headers: &BTreeMap<String, String>,
    secret: Option<&str>,
    payload: Value,
) {
    let body = Bytes::from(payload.to_string());
    for attempt in 1..=ATTEMPTS {
        match post_once(uri, headers, secret, body.clone()).await {
            Ok(status) if !status.is_server_error() => {
                tracing::info!(%uri, %status, "execution callback delivered");
                return;
            }
            Ok(status) => tracing::warn!(%uri, %status, attempt, "execution callback refused"),
            Err(e) => tracing::warn!(%uri, error = %e, attempt, "execution callback failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
    }
}

async fn post_once(
    uri: &Uri,
    headers: &BTreeMap<String, String>,
    secret: Option<&str>,
    body: Bytes,
) -> Result<axum::http::StatusCode, String> {
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::post(path)
        .header(axum::http::header::HOST, authority)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::USER_AGENT, "hutch-agent")
        .header(
            "X-HOPX-Timestamp",
            chrono::Utc::now().timestamp().to_string(),
        );
    if let Some(sig) = secret.and_then(|s| signature(s, &body)) {
        builder = builder.header("X-HOPX-Signature", sig);
    }
    for (k, v) in headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(value)) => builder = builder.header(name, value),
            _ => tracing::warn!(header = %k, "skipping an invalid callback header"),
        }
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let result = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        let resp = sender.send_request(request).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok::<_, hyper::Error>(status)
    })
    .await;
    driver.abort();
    match result {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("request: {e}")),
        Err(_) => Err("no answer in time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_body() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig.as_deref(),
            Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn only_http_callbacks() {
        assert!(parse_callback("http://127.0.0.1:8080/hook").is_ok());
        assert!(parse_callback("https://example.com/hook").is_err());
        assert!(parse_callback("/hook").is_err());
    }
}
