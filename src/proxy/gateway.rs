//! The request path, one step per module:
//! head checks ([`super::head`]) -> route classification ([`Destination`])
//! -> authentication -> upstream request rewrite ([`super::rewrite`]) ->
//! forward ([`super::forward`]) -> response. Every failure becomes an answer
//! in one place ([`super::respond::error`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::header::{HeaderValue, AUTHORIZATION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::api::AuthApi;
use super::body::{Body, Outgoing};
use super::client::{ClientInfo, Peer};
use super::forward::{tunnel, Forwarder};
use super::head::{self, Limits};
use super::headers::{
    acceptable_request_id, new_request_id, query_method_overrides, NameSet, METHOD_OVERRIDE,
};
use super::respond::{self, X_REQUEST_ID};
use super::revoke::requested_scope;
use super::rewrite::{asks_upgrade, strip_response, Decided, Rewrite};
use crate::auth::routes::RouteTable;
use crate::auth::{Authenticator, Verified};
use crate::config::{AuthPolicy, Config};
use crate::errors::{ApiError, Internal};
use crate::metrics::{Metrics, Route};
use crate::sessions::Client;

pub use crate::names::JWKS_PATH;

/// Shared by every worker, read-only.
pub struct Gateway {
    auth: Arc<Authenticator>,
    routes: RouteTable,
    api: AuthApi,
    rewrite: Arc<Rewrite>,
    limits: Limits,
    trusted_proxies: Vec<ipnet::IpNet>,
    metrics: Arc<Metrics>,
    /// `upstream.revoke_header` (SPEC 10).
    revoke_header: Option<http::HeaderName>,
    /// [`METHOD_OVERRIDE`]'s names.
    method_overrides: NameSet,
}

/// Where a request goes, decided on its normalized path.
enum Destination {
    Jwks,
    /// The `/v1/auth` API (SPEC 4).
    AuthApi,
    /// The upstream, under this auth policy.
    Upstream(AuthPolicy),
}

/// What is known about one request as it moves along the path.
pub struct RequestCtx {
    pub start: Instant,
    pub route: Route,
    pub request_id: HeaderValue,
    pub client: ClientInfo,
    pub identity: Option<Arc<Verified>>,
    pub upstream_start: Option<Instant>,
    /// The socket peer's address as a header value.
    pub peer: HeaderValue,
}

impl Gateway {
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
        api: AuthApi,
        rewrite: Arc<Rewrite>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Gateway {
            auth,
            routes: RouteTable::new(config.routes.clone()),
            api,
            rewrite,
            limits: Limits {
                max_headers: config.server.max_headers,
                max_header_bytes: config.server.max_header_bytes,
            },
            trusted_proxies: config.server.trusted_proxies.clone(),
            metrics,
            revoke_header: config.upstream.revoke_header.clone(),
            method_overrides: NameSet::new(METHOD_OVERRIDE.iter().map(|n| n.as_bytes())),
        }
    }

    /// Answers one request from a client at `peer`. Never fails: every
    /// error is an answer, and a panic costs this request a 500, never the
    /// connection an empty reply.
    pub async fn handle(
        &self,
        fwd: &Forwarder,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let mut ctx = RequestCtx {
            start: Instant::now(),
            route: Route::Proxy,
            request_id: req
                .headers()
                .get(X_REQUEST_ID)
                .filter(|v| acceptable_request_id(v))
                .cloned()
                .unwrap_or_else(new_request_id),
            client: ClientInfo::new(peer.ip, req.headers(), &self.trusted_proxies),
            peer: peer.header.clone(),
            identity: None,
            upstream_start: None,
        };
        let method = req.method().clone();
        let uri = req.uri().clone();
        let resp = match AssertUnwindSafe(self.pipeline(fwd, req, &mut ctx))
            .catch_unwind()
            .await
        {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => respond::error(&e, &ctx),
            Err(_) => respond::error(
                &ApiError::Internal(Internal::new("request handling panicked")),
                &ctx,
            ),
        };
        self.finish(&ctx, &method, &uri, resp.status().as_u16());
        resp
    }

    async fn pipeline(
        &self,
        fwd: &Forwarder,
        req: Request<Incoming>,
        ctx: &mut RequestCtx,
    ) -> Result<Response<Body>, ApiError> {
        let head::Target { path, forward } = head::check(&req, &self.limits)?;
        match self.classify(&req, &path)? {
            Destination::Jwks => {
                ctx.route = Route::Jwks;
                self.api.jwks(req.method(), ctx)
            }
            // Boxed: the session API's state machine is large, and kept
            // inline it would be moved with every proxied request's future.
            Destination::AuthApi => {
                let path = path.into_owned();
                Box::pin(self.api.handle(fwd, req, ctx, &path)).await
            }
            Destination::Upstream(policy) => {
                ctx.identity = self.authenticate(policy, &req)?;
                self.proxy(fwd, req, forward, ctx).await
            }
        }
    }

    fn classify(&self, req: &Request<Incoming>, path: &str) -> Result<Destination, ApiError> {
        if path == JWKS_PATH {
            return Ok(Destination::Jwks);
        }
        if self.api.owns(path) {
            return Ok(Destination::AuthApi);
        }
        if self.api.guards_login_upstream(path) {
            return Err(ApiError::NotFound);
        }
        let query_overrides = query_method_overrides(req.uri().query().unwrap_or(""));
        // One pass over the headers, names looked up by length: in any
        // spelling (`_` for `-` too, as CGI-style servers read them).
        let overrides = req
            .headers()
            .iter()
            .filter(|(name, _)| self.method_overrides.contains(name.as_str().as_bytes()))
            .map(|(_, v)| v.as_bytes())
            .chain(query_overrides.iter().map(Vec::as_slice));
        Ok(Destination::Upstream(self.routes.policy_with_overrides(
            req.method(),
            overrides,
            path,
        )))
    }

    fn authenticate(
        &self,
        policy: AuthPolicy,
        req: &Request<Incoming>,
    ) -> Result<Option<Arc<Verified>>, ApiError> {
        let header = req.headers().get(AUTHORIZATION);
        Ok(match policy {
            AuthPolicy::None => None,
            AuthPolicy::Optional => self.auth.authenticate(header)?,
            AuthPolicy::Required => Some(self.auth.require(header)?),
        })
    }

    async fn proxy(
        &self,
        fwd: &Forwarder,
        mut req: Request<Incoming>,
        target: Option<Uri>,
        ctx: &mut RequestCtx,
    ) -> Result<Response<Body>, ApiError> {
        // An upgrade (WebSocket) is passed on only from HTTP/1.1, and the
        // tunnel opens only if the upstream agrees to what was offered.
        let offered = (req.version() == Version::HTTP_11 && asks_upgrade(req.headers()))
            .then(|| req.headers().get(UPGRADE).cloned())
            .flatten();
        let client_upgrade = offered.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let user_agent = self
            .revoke_header
            .as_ref()
            .and_then(|_| req.headers().get(http::header::USER_AGENT).cloned());
        let (mut parts, body) = req.into_parts();
        self.rewrite.apply(
            &mut parts,
            target,
            &[],
            &Decided {
                client: &ctx.client,
                peer: &ctx.peer,
                identity: ctx.identity.as_deref(),
                request_id: &ctx.request_id,
                upgrade: offered.is_some(),
                upstream_authority: fwd.upstream().authority(),
            },
        )?;
        ctx.upstream_start = Some(Instant::now());
        let (mut resp, conn) = fwd
            .exchange(Request::from_parts(parts, Outgoing::Client(body)))
            .await?;
        // The answer's version is ours, whatever the upstream's: an HTTP/1.0
        // upstream must not close a kept-alive client connection (hyper
        // speaks HTTP/1.0 to an HTTP/1.0 client, keep-alive included).
        *resp.version_mut() = Version::HTTP_11;
        if let Some(name) = &self.revoke_header {
            let who = ctx.identity.as_deref();
            if let Some(scope) = requested_scope(resp.headers_mut(), name, who.is_some()) {
                let client = Client {
                    ip: ctx.client.ip.to_string(),
                    user_agent: Client::user_agent_of(user_agent.as_ref()),
                };
                // Committed before the response goes on; if it cannot be,
                // the client gets 503 instead (fail closed). Boxed like the
                // session API: a store call is a large state machine.
                if let Some(who) = who {
                    let sessions = &self.api.sessions;
                    Box::pin(sessions.upstream_revoke(who, scope, &client)).await?;
                }
            }
        }
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = client_upgrade.filter(|_| agreed(&offered, &resp)) else {
                // Never a raw tunnel the client did not ask for.
                tracing::warn!("the upstream switched protocols without an agreed upgrade");
                return Err(ApiError::UpstreamUnavailable(
                    "The upstream service failed.".into(),
                ));
            };
            tunnel(client_upgrade, hyper::upgrade::on(&mut resp));
        }
        let h = resp.headers_mut();
        strip_response(h, switching);
        for name in self.api.login_control_headers().into_iter().flatten() {
            // Looking is cheaper than removing, and usually enough.
            if h.contains_key(name) {
                h.remove(name);
            }
        }
        h.insert(X_REQUEST_ID, ctx.request_id.clone());
        if switching {
            drop(conn);
            return Ok(resp.map(|_| Body::empty()));
        }
        Ok(fwd.stream(resp, conn))
    }

    /// Counts and logs one answered request.
    fn finish(&self, ctx: &RequestCtx, method: &Method, uri: &Uri, status: u16) {
        let now = Instant::now();
        let took = now.duration_since(ctx.start);
        self.metrics
            .observe_request(ctx.route, status, took.as_secs_f64());
        if let Some(t) = ctx.upstream_start {
            self.metrics
                .observe_upstream(now.duration_since(t).as_secs_f64());
        }
        crate::logging::access(&crate::logging::AccessRecord {
            method: method.as_str(),
            path: uri.path(),
            status,
            route: ctx.route.as_str(),
            duration_ms: took.as_secs_f64() * 1000.0,
            client_ip: ctx.client.ip,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            user_id: ctx.identity.as_ref().map(|i| i.sub.as_str()),
        });
    }
}

/// A 101 is passed on only when the upstream's `Upgrade` names one of the
/// protocols the client offered.
fn agreed(offered: &Option<HeaderValue>, resp: &Response<Incoming>) -> bool {
    let (Some(offered), Some(chosen)) = (offered, resp.headers().get(UPGRADE)) else {
        return false;
    };
    let chosen = chosen.as_bytes().trim_ascii();
    offered
        .as_bytes()
        .split(|b| *b == b',')
        .any(|o| o.trim_ascii().eq_ignore_ascii_case(chosen))
}
