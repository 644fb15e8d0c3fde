//! Writing the answers sessiongate makes itself (errors, session API, JWKS).

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::gateway::RequestCtx;
use crate::errors::ApiError;

pub const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// How long one write of an answer of ours may wait for the client to read.
/// The largest such answer is one page of sessions (a few hundred KB at
/// most), which the socket buffers mostly absorb; a client that reads nothing
/// is dropped after this, and with it the answer it held in memory.
pub const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Sends a complete response. The body is skipped for HEAD requests.
pub async fn send(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    extra: Vec<(HeaderName, HeaderValue)>,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    if !body.is_empty() || status != 204 {
        resp.insert_header(http::header::CONTENT_TYPE, JSON)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    // Answers are private unless the caller says otherwise (the JWKS).
    if !extra.iter().any(|(n, _)| n == http::header::CACHE_CONTROL) {
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    }
    resp.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
    for (name, value) in extra {
        resp.append_header(name, value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    ctx.count(status);
    // Only this answer: a kept-alive connection's next request starts afresh.
    session.set_write_timeout(Some(ANSWER_WRITE_TIMEOUT));
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

/// Sends `err` as SPEC 4's JSON error, with `WWW-Authenticate` / `Retry-After` where due.
pub async fn send_error(
    session: &mut Session,
    err: &ApiError,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let mut extra = Vec::new();
    if let Some(challenge) = err.www_authenticate() {
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            extra.push((http::header::WWW_AUTHENTICATE, v));
        }
    }
    if let ApiError::RateLimited { retry_after_secs } = err {
        extra.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(*retry_after_secs),
        ));
    }
    if matches!(err.status(), 400 | 413 | 431) {
        // The request's framing or body may be unread: do not reuse the connection.
        session.set_keepalive(None);
    }
    send(session, err.status(), err.body(), extra, ctx).await
}
