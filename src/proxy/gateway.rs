//! The pingora `ProxyHttp` implementation. Each phase delegates: request
//! checks and routing, then auth, then header rewrite and forwarding.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures_util::FutureExt;
use http::header::{HeaderValue, AUTHORIZATION, COOKIE, HOST};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

use super::api::AuthApi;
use super::client::ClientInfo;
use super::headers::{
    acceptable_request_id, new_request_id, query_method_overrides, same_name, FORWARDING_CLAIMS,
    METHOD_OVERRIDE, REROUTING,
};
use super::path::normalize;
use super::respond::{send_error, X_REQUEST_ID};
use super::upstream::Upstream;
use crate::auth::routes::RouteTable;
use crate::auth::{Authenticator, Verified};
use crate::config::{AuthPolicy, Config, IdentityHeaders};
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::shutdown::{InFlight, InFlightGuard};

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub struct Gateway {
    pub auth: Arc<Authenticator>,
    pub routes: RouteTable,
    pub api: AuthApi,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    pub identity: IdentityHeaders,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tls: bool,
    pub inflight: Arc<InFlight>,
    /// sessiongate's own refresh cookie, never passed on to the upstream.
    pub refresh_cookie: Option<String>,
}

/// Per-request state shared across the phases.
pub struct RequestCtx {
    pub start: Instant,
    pub route: &'static str,
    pub request_id: HeaderValue,
    pub client: ClientInfo,
    pub identity: Option<Arc<Verified>>,
    /// The normalized path and query, when it differs from what the client sent.
    pub forward_target: Option<String>,
    pub upstream_start: Option<Instant>,
    metrics: Arc<Metrics>,
    /// The request was already counted (answers sessiongate writes itself
    /// are counted before they are sent, so a client sees them in /metrics).
    counted: bool,
    _inflight: InFlightGuard,
}

impl RequestCtx {
    /// Counts the request in the request metrics, once.
    pub fn count(&mut self, status: u16) {
        if !self.counted {
            self.counted = true;
            self.metrics
                .observe_request(self.route, status, self.start.elapsed().as_secs_f64());
        }
    }
}

impl Gateway {
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
        api: AuthApi,
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
        inflight: Arc<InFlight>,
    ) -> Self {
        Gateway {
            auth,
            routes: RouteTable::new(config.routes.clone()),
            api,
            upstream,
            metrics,
            identity: config.identity_headers.clone(),
            max_headers: config.server.max_headers,
            max_header_bytes: config.server.max_header_bytes,
            trusted_proxies: config.server.trusted_proxies.clone(),
            tls: config.server.tls.is_some(),
            inflight,
            refresh_cookie: config
                .sessions
                .refresh_cookie
                .as_ref()
                .map(|c| c.name.clone()),
        }
    }

    /// Everything decided before forwarding. `Ok(true)`: the answer was sent.
    async fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool, ApiError> {
        let req = session.req_header();
        if req.headers.len() > self.max_headers || head_size(req) > self.max_header_bytes {
            return Err(ApiError::HeadersTooLarge);
        }
        if req.version == http::Version::HTTP_11 && !req.headers.contains_key(HOST) {
            // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.
            return Err(ApiError::BadRequest(
                "an HTTP/1.1 request needs a Host header",
            ));
        }
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && has_content_length_line(&session.as_downstream().to_h1_raw())
        {
            // RFC 9112 6.1: a smuggling attempt more often than not. (pingora
            // drops the Content-Length from the parsed head: read the raw one.)
            return Err(ApiError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if req.headers.get_all(AUTHORIZATION).iter().count() > 1 {
            return Err(ApiError::BadRequest("more than one Authorization header"));
        }
        let raw = req.raw_path();
        if raw.contains(&b'\\') || raw.contains(&b'#') {
            return Err(ApiError::BadRequest(
                "backslash or fragment in the request target",
            ));
        }
        let form = target_form(raw, &req.method)?;
        let path = match form {
            TargetForm::Asterisk => "*".to_owned(),
            TargetForm::Origin | TargetForm::Absolute => {
                let path = match req.uri.path() {
                    "" => "/",
                    p => p,
                };
                let normalized = normalize(path).map_err(ApiError::BadRequest)?;
                // The upstream gets exactly the target decided on: the
                // normalized path in origin-form, never the client's bytes
                // when they differ (absolute-form, dot segments, ...).
                if form == TargetForm::Absolute || !is_origin_target(raw, &normalized, &req.uri) {
                    let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
                    ctx.forward_target = Some(format!("{normalized}{query}"));
                }
                normalized.into_owned()
            }
        };
        if path == JWKS_PATH {
            ctx.route = "jwks";
            self.api.jwks(session, ctx).await?;
            return Ok(true);
        }
        if self.api.owns(&path) {
            self.api.handle(self, session, ctx, &path).await?;
            return Ok(true);
        }
        ctx.route = "proxy";
        if self.api.guards_login_upstream(&path) {
            return Err(ApiError::NotFound);
        }
        let req = session.req_header();
        let query_overrides = query_method_overrides(req.uri.query().unwrap_or(""));
        let overrides = METHOD_OVERRIDE
            .iter()
            .flat_map(|h| req.headers.get_all(*h).iter().map(|v| v.as_bytes()))
            .chain(query_overrides.iter().map(Vec::as_slice));
        match self
            .routes
            .policy_with_overrides(&req.method, overrides, &path)
        {
            AuthPolicy::None => {}
            AuthPolicy::Optional => {
                ctx.identity = self.auth.authenticate(req.headers.get(AUTHORIZATION))?
            }
            AuthPolicy::Required => {
                ctx.identity = Some(self.auth.require(req.headers.get(AUTHORIZATION))?);
            }
        }
        Ok(false)
    }

    /// Rewrites a request bound for the upstream (proxied requests and login alike).
    pub fn rewrite_upstream_request(
        &self,
        req: &mut RequestHeader,
        ctx: &RequestCtx,
        strip: &[&http::HeaderName],
    ) -> pingora::Result<()> {
        if let Some(target) = &ctx.forward_target {
            req.set_uri(
                target
                    .parse()
                    .map_err(|_| Error::explain(ErrorType::InternalError, "normalized URI"))?,
            );
        }
        // Client copies of identity headers, in any spelling, never pass.
        let identity = [
            &self.identity.user_id,
            &self.identity.session_id,
            &self.identity.claims,
        ];
        let untrusted: &[&str] = if ctx.client.peer_trusted {
            &[]
        } else {
            FORWARDING_CLAIMS
        };
        let doomed = |k: &http::HeaderName| {
            let k = k.as_str().as_bytes();
            identity
                .iter()
                .chain(strip)
                .any(|h| same_name(k, h.as_str().as_bytes()))
                || REROUTING
                    .iter()
                    .chain(untrusted)
                    .any(|h| same_name(k, h.as_bytes()))
        };
        // Usually nothing matches: no list to build then.
        if req.headers.keys().any(doomed) {
            let names: Vec<http::HeaderName> =
                req.headers.keys().filter(|k| doomed(k)).cloned().collect();
            for name in names {
                req.remove_header(&name);
            }
        }
        if let Some(name) = &self.refresh_cookie {
            strip_cookie(req, name)?;
        }
        if let Some(id) = &ctx.identity {
            req.insert_header(self.identity.user_id.clone(), id.user_header.clone())?;
            req.insert_header(self.identity.session_id.clone(), id.session_header.clone())?;
            req.insert_header(self.identity.claims.clone(), id.claims_header.clone())?;
        }
        let peer = ctx.client.peer_ip.to_string();
        if ctx.client.peer_trusted {
            // Several field lines are one list (RFC 9110 5.3): keep them all.
            let mut xff = String::new();
            // Elements that are empty or not text are dropped, as the
            // client-IP logic drops them.
            let priors = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|e| !e.is_empty());
            for prior in priors {
                xff.push_str(prior);
                xff.push_str(", ");
            }
            xff.push_str(&peer);
            req.insert_header("x-forwarded-for", xff)?;
        } else {
            req.insert_header("x-forwarded-for", peer)?;
        }
        if !ctx.client.peer_trusted || !req.headers.contains_key("x-forwarded-proto") {
            req.insert_header("x-forwarded-proto", if self.tls { "https" } else { "http" })?;
        }
        if !ctx.client.peer_trusted || !req.headers.contains_key("x-forwarded-host") {
            match req.headers.get(HOST).cloned() {
                Some(host) => req.insert_header("x-forwarded-host", host)?,
                None => {
                    req.remove_header("x-forwarded-host");
                }
            }
        }
        if !req.headers.contains_key(HOST) {
            req.insert_header(HOST, self.upstream.authority())?;
        }
        req.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        Ok(())
    }
}

/// Removes the cookie `name` from every Cookie header: the refresh token
/// stays between the browser and sessiongate (a legacy upstream may log
/// cookies). Other cookies pass unchanged.
fn strip_cookie(req: &mut RequestHeader, name: &str) -> pingora::Result<()> {
    let carries = |v: &HeaderValue| {
        v.as_bytes()
            .windows(name.len())
            .any(|w| w == name.as_bytes())
    };
    if !req.headers.get_all(COOKIE).iter().any(carries) {
        return Ok(());
    }
    // Bytes, not text: other cookies pass exactly as they came.
    let kept: Vec<Vec<u8>> = req
        .headers
        .get_all(COOKIE)
        .iter()
        .map(|v| {
            let pairs: Vec<&[u8]> = v
                .as_bytes()
                .split(|b| *b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| {
                    let cookie = pair.split(|b| *b == b'=').next().unwrap_or(pair);
                    cookie.trim_ascii() != name.as_bytes()
                })
                .collect();
            pairs.join(&b"; "[..])
        })
        .filter(|v| !v.is_empty())
        .collect();
    req.remove_header(&COOKIE);
    for value in kept {
        // Came from a valid header value minus some bytes: still valid.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            req.append_header(COOKIE, value)?;
        }
    }
    Ok(())
}

/// The request-target forms of RFC 9112 3.2 that may pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TargetForm {
    /// `/path?query`: the usual form.
    Origin,
    /// `*`, for `OPTIONS` only.
    Asterisk,
    /// `http(s)://authority/path`: decided and forwarded as origin-form.
    Absolute,
}

/// Anything else (`x:/admin`, authority-form, a bare word) is refused: some
/// upstream servers read such targets as a path the routes never saw.
fn target_form(raw: &[u8], method: &http::Method) -> Result<TargetForm, ApiError> {
    let has_prefix = |p: &[u8]| raw.len() > p.len() && raw[..p.len()].eq_ignore_ascii_case(p);
    match raw {
        [b'/', ..] => Ok(TargetForm::Origin),
        b"*" if method == http::Method::OPTIONS => Ok(TargetForm::Asterisk),
        _ if has_prefix(b"http://") || has_prefix(b"https://") => Ok(TargetForm::Absolute),
        _ => Err(ApiError::BadRequest(
            "the request target must be a path starting with /",
        )),
    }
}

/// Whether the client's origin-form target is byte for byte the normalized
/// path plus the query, so it can be forwarded as it came.
fn is_origin_target(raw: &[u8], normalized: &str, uri: &http::Uri) -> bool {
    let (path, query) = match raw.iter().position(|b| *b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    path == normalized.as_bytes() && query == uri.query().map(str::as_bytes)
}

/// A 101 is passed on only when the client asked to upgrade (HTTP/1.1 with
/// `Upgrade`) and the upstream's `Upgrade` names one of the protocols asked for.
fn upgrade_agreed(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    let Some(chosen) = resp.headers.get(http::header::UPGRADE) else {
        return false;
    };
    let chosen = chosen.as_bytes().trim_ascii();
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get_all(http::header::UPGRADE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|offered| offered.trim_ascii().eq_ignore_ascii_case(chosen))
}

/// Whether a raw request head has a `Content-Length` field line.
fn has_content_length_line(head: &[u8]) -> bool {
    const NAME: &[u8] = b"\ncontent-length:";
    head.windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
}

fn head_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    line + req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

fn to_api_error(e: &Error) -> Option<ApiError> {
    use ErrorType::*;
    if let HTTPStatus(code) = e.etype() {
        return Some(match code {
            431 => ApiError::HeadersTooLarge,
            413 => ApiError::PayloadTooLarge,
            400..=499 => ApiError::BadRequest("the request is malformed"),
            _ => ApiError::UpstreamUnavailable("The upstream service failed.".into()),
        });
    }
    match e.esource() {
        pingora::ErrorSource::Upstream => Some(match e.etype() {
            ReadTimedout | WriteTimedout => ApiError::UpstreamTimeout,
            _ => ApiError::UpstreamUnavailable("The upstream service is unavailable.".into()),
        }),
        pingora::ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => None,
            _ => Some(ApiError::BadRequest("the request is malformed")),
        },
        _ => match e.etype() {
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
            | ConnectProxyFailure | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert
            | SocketError => Some(ApiError::UpstreamUnavailable(
                "The upstream service is unavailable.".into(),
            )),
            _ => Some(ApiError::Internal),
        },
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            route: "proxy",
            request_id: HeaderValue::from_static("-"),
            client: ClientInfo::unknown(),
            identity: None,
            forward_target: None,
            upstream_start: None,
            metrics: self.metrics.clone(),
            counted: false,
            _inflight: self.inflight.enter(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let req = session.req_header();
        ctx.request_id = req
            .headers
            .get(X_REQUEST_ID)
            .filter(|v| acceptable_request_id(v))
            .cloned()
            .unwrap_or_else(new_request_id);
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        ctx.client = ClientInfo::new(peer_ip, session.req_header(), &self.trusted_proxies);
        // A bug must cost one request a 500, never the connection an empty
        // reply: the panic is caught here and answered.
        let decided = AssertUnwindSafe(self.decide(session, ctx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    "request handling panicked"
                );
                Err(ApiError::Internal)
            });
        match decided {
            Ok(done) => Ok(done),
            Err(e) => {
                send_error(session, &e, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.upstream_start = Some(Instant::now());
        match self.upstream.peer() {
            Some(p) => Ok(Box::new((*p).clone())),
            None => Error::e_explain(
                ErrorType::ConnectNoRoute,
                "the upstream address is not resolved",
            ),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        self.rewrite_upstream_request(req, ctx, &[])
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !upgrade_agreed(session.req_header(), resp)
        {
            // Never a raw tunnel the client did not ask for.
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                "101 without an upgrade the client asked for",
            );
        }
        if let Some(names) = self.api.login_control_headers() {
            for name in names {
                // Looking is cheaper than removing, and usually enough.
                if resp.headers.contains_key(name) {
                    resp.remove_header(name);
                }
            }
        }
        resp.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let api = if session.response_written().is_some() {
            None
        } else {
            to_api_error(e)
        };
        let code = match &api {
            Some(err) => {
                if err.status() >= 500 {
                    tracing::warn!(error = %e, request_id = ctx.request_id.to_str().unwrap_or("-"), "proxying failed");
                }
                match send_error(session, err, ctx).await {
                    Ok(()) => err.status(),
                    Err(_) => 0,
                }
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs what matters, without pingora's request summary
        // (which could carry a token in a query string).
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        ctx.count(status);
        if let Some(t) = ctx.upstream_start {
            self.metrics
                .upstream_duration
                .observe(t.elapsed().as_secs_f64());
        }
        let req = session.req_header();
        crate::logging::access(&crate::logging::AccessRecord {
            method: req.method.as_str(),
            path: req.uri.path(),
            status,
            route: ctx.route,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            client_ip: ctx.client.ip,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            user_id: ctx.identity.as_ref().map(|i| i.sub.as_str()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies_after(lines: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for line in lines {
            req.append_header(COOKIE, HeaderValue::from_bytes(line).unwrap())
                .unwrap();
        }
        strip_cookie(&mut req, "sg_refresh").unwrap();
        req.headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn only_our_cookie_is_removed() {
        assert_eq!(
            cookies_after(&[b"a=1; sg_refresh=t; xsg_refresh=2; sg_refresh_x=3"]),
            [b"a=1; xsg_refresh=2; sg_refresh_x=3".to_vec()]
        );
        assert_eq!(
            cookies_after(&[b" sg_refresh = \"t\" ;;  b=2 ", b"sg_refresh=t"]),
            [b"b=2".to_vec()]
        );
        assert!(cookies_after(&[b"sg_refresh=t"]).is_empty());
        // Bytes that are not UTF-8 in other cookies pass exactly.
        assert_eq!(
            cookies_after(&[b"a=\xe9t\xe9; sg_refresh=t"]),
            [b"a=\xe9t\xe9".to_vec()]
        );
        // No cookie of ours: the headers are left alone, even odd spacing.
        assert_eq!(cookies_after(&[b"a=1;b=2"]), [b"a=1;b=2".to_vec()]);
    }
}
