//! Step 1 of the request path: checks on the request head, before anything
//! is routed, and the path the decision is made on.
//!
//! What hyper's HTTP/1 parser refuses never gets here (README, "What
//! happens to a request"); what it accepts but an upstream could read
//! another way is refused here, with SPEC 4's JSON.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, HOST};
use http::{Method, Request, Uri, Version};

use super::path::normalize;
use crate::errors::ApiError;

pub struct Limits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// The path a request is decided on, and the target it is forwarded with
/// when that is not the client's own bytes.
pub struct Target<'r> {
    /// Borrowed from the request unless normalizing changed it.
    pub path: Cow<'r, str>,
    /// `Some`: the upstream gets this origin-form target instead of the client's.
    pub forward: Option<Uri>,
}

/// The request-target forms of RFC 9112 3.2 that may pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `/path?query`: the usual form.
    Origin,
    /// `*`, for `OPTIONS` only.
    Asterisk,
    /// `http(s)://authority/path`, and every HTTP/2 request: decided and
    /// forwarded as origin-form.
    Absolute,
}

pub fn check<'r, B>(req: &'r Request<B>, limits: &Limits) -> Result<Target<'r>, ApiError> {
    let headers = req.headers();
    if headers.len() > limits.max_headers || head_size(req) > limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge);
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ApiError::BadRequest("more than one Host header"));
    }
    if host.is_some_and(|h| !is_host(h.as_bytes())) {
        // RFC 9112 3.2: an upstream building a URL from it must not get a
        // path, a user name or a second host.
        return Err(ApiError::BadRequest(
            "the Host header is not a host name or address with an optional port",
        ));
    }
    if req.version() == Version::HTTP_11 && host.is_none() {
        // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.
        return Err(ApiError::BadRequest(
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    if headers.get_all(AUTHORIZATION).iter().nth(1).is_some() {
        return Err(ApiError::BadRequest("more than one Authorization header"));
    }
    // hyper frames a body by its final `chunked` and sessiongate forwards
    // it re-framed: any other coding would reach the upstream undeclared.
    let codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    for coding in codings {
        if !coding.eq_ignore_ascii_case(b"chunked") && !coding.eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::BadRequest("a transfer coding other than chunked"));
        }
    }
    if req.method() == Method::CONNECT {
        return Err(ApiError::BadRequest("CONNECT is not supported"));
    }
    let uri = req.uri();
    let raw = uri.path_and_query().map_or("", |pq| pq.as_str()).as_bytes();
    if raw.contains(&b'\\') {
        return Err(ApiError::BadRequest("backslash in the request target"));
    }
    let form = form(req)?;
    if form == Form::Absolute {
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // RFC 9113 8.3.1 (and 9110 4.2.4): never a user name in the target.
            return Err(ApiError::BadRequest(
                "the request target's authority has a user name",
            ));
        }
        // RFC 9112 3.2.2, RFC 9113 8.3.1: the target's authority (HTTP/2's
        // `:authority`) is the Host; two different ones are two opinions of
        // where the request goes. HTTP/2 may carry either alone.
        let same = match (uri.authority(), host) {
            (Some(a), Some(h)) => a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()),
            _ => req.version() == Version::HTTP_2,
        };
        if !same {
            return Err(ApiError::BadRequest(
                "the request target's authority is not the Host",
            ));
        }
    }
    if form == Form::Asterisk {
        return Ok(Target {
            path: Cow::Borrowed("*"),
            forward: None,
        });
    }
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let normalized = normalize(path).map_err(ApiError::BadRequest)?;
    // The upstream gets exactly the target decided on: the normalized path
    // in origin-form, never the client's bytes when they differ.
    let forward = if form == Form::Absolute || !matches!(normalized, Cow::Borrowed(_)) {
        let target = match uri.query() {
            Some(q) => format!("{normalized}?{q}"),
            None => normalized.clone().into_owned(),
        };
        Some(
            target
                .parse::<Uri>()
                .map_err(|_| ApiError::BadRequest("the request target is malformed"))?,
        )
    } else {
        None
    };
    Ok(Target {
        path: normalized,
        forward,
    })
}

/// Anything but origin-form, `OPTIONS *` and http(s) absolute-form
/// (`x:/admin`, authority-form, a bare word) is refused: some upstream
/// servers read such targets as a path the routes never saw.
fn form<B>(req: &Request<B>) -> Result<Form, ApiError> {
    let uri = req.uri();
    if req.version() == Version::HTTP_2 {
        // hyper builds the URI from :scheme, :authority and :path.
        return match uri.path() {
            p if p.starts_with('/') => Ok(Form::Absolute),
            "*" if req.method() == Method::OPTIONS => Ok(Form::Asterisk),
            _ => Err(refused_form()),
        };
    }
    match (uri.scheme_str(), uri.authority()) {
        (None, None) => match uri.path() {
            p if p.starts_with('/') => Ok(Form::Origin),
            "*" if req.method() == Method::OPTIONS => Ok(Form::Asterisk),
            _ => Err(refused_form()),
        },
        (Some(s), Some(_)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            Ok(Form::Absolute)
        }
        _ => Err(refused_form()),
    }
}

fn refused_form() -> ApiError {
    ApiError::BadRequest("the request target must be a path starting with /")
}

/// `uri-host [":" port]` (RFC 3986 3.2.2): letters, digits and the
/// characters of a registered name, an IP literal's brackets and the port's
/// colon. Empty is allowed (RFC 9112 3.2: a target without an authority).
/// No `@`, `/`, `?`, `#`, space or control: nothing that makes it more
/// than a host.
fn is_host(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// The head's size as an HTTP/1.1 client writes it: request line, `name:
/// value` lines and the blank line that ends the head.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    line + 2
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
}
