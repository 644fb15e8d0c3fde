//! The answers sessiongate makes itself (errors, session API, JWKS), and the
//! one place that maps every failure (ours, hyper's, the upstream's) to an
//! answer.

use http::header::{HeaderName, HeaderValue};
use http::Response;

use super::body::Body;
use super::gateway::RequestCtx;
use crate::errors::ApiError;

pub const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A complete answer: JSON (unless empty), `Cache-Control: no-store` unless
/// `extra` says otherwise, and the request id. hyper leaves the body out for HEAD.
pub fn answer(
    status: u16,
    body: Vec<u8>,
    extra: Vec<(HeaderName, HeaderValue)>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if status != 204 {
        h.insert(http::header::CONTENT_TYPE, JSON);
    }
    // Answers are private unless the caller says otherwise (the JWKS).
    if !extra.iter().any(|(n, _)| n == http::header::CACHE_CONTROL) {
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    h.insert(X_REQUEST_ID, ctx.request_id.clone());
    for (name, value) in extra {
        h.append(name, value);
    }
    resp
}

/// `err` as SPEC 4's JSON error, with `WWW-Authenticate` / `Retry-After` where due.
/// A 500's cause is logged here, once, with the request id.
pub fn error(err: &ApiError, ctx: &RequestCtx) -> Response<Body> {
    if let ApiError::Internal(why) = err {
        tracing::error!(
            request_id = ctx.request_id.to_str().unwrap_or("-"),
            error = %why,
            "internal error"
        );
    }
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
        // The request's framing or body may be unread: do not reuse the
        // connection (hyper closes it after this answer; HTTP/2 drops it).
        extra.push((http::header::CONNECTION, HeaderValue::from_static("close")));
    }
    answer(err.status(), err.body(), extra, ctx)
}

/// A failure from hyper while talking to the upstream.
pub fn upstream_failure(e: &hyper::Error) -> ApiError {
    if e.is_user() || e.is_body_write_aborted() {
        // The client's own body failed (a bad chunk size, the client went
        // away): the upstream never got a complete request.
        return ApiError::BadRequest("the request body could not be read");
    }
    ApiError::UpstreamUnavailable("The upstream service is unavailable.".into())
}
