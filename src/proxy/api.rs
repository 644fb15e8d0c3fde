//! The `/v1/auth` routes and the JWKS (SPEC 4), answered by sessiongate itself.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use super::body::Body;
use super::client::user_agent;
use super::forward::Forwarder;
use super::gateway::RequestCtx;
use super::login::LoginForwarder;
use super::query::page_query;
use super::respond::answer;
use super::rewrite::Rewrite;
use crate::auth::keys::TokenKey;
use crate::auth::{Authenticator, Verified};
use crate::config::{Config, RefreshCookieConfig, SameSite};
use crate::errors::ApiError;
use crate::metrics::Route;
use crate::sessions::ratelimit::RateLimits;
use crate::sessions::{Client, Sessions, TokenResponse};

const PREFIX: &str = "/v1/auth/";
const DEFAULT_LOGIN_PATH: &str = "/v1/auth/login";
/// GET /v1/auth/sessions without `limit` (SPEC 4.4).
const SESSIONS_PAGE: usize = 100;
/// GET /v1/auth/security-events without `limit` (SPEC 4.8).
const EVENTS_PAGE: usize = 50;

pub struct AuthApi {
    pub(super) sessions: Arc<Sessions>,
    auth: Arc<Authenticator>,
    rewrite: Arc<Rewrite>,
    login: Option<LoginForwarder>,
    jwks: Vec<u8>,
    max_body: usize,
    /// `server.header_read_timeout`: the whole body must arrive within it too.
    body_timeout: std::time::Duration,
    cookie: Option<RefreshCookieConfig>,
    limits: RateLimits,
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct RevokeAllBody {
    #[serde(default)]
    keep_current: bool,
}

impl AuthApi {
    pub fn new(
        config: &Config,
        keys: &[Arc<TokenKey>],
        sessions: Arc<Sessions>,
        auth: Arc<Authenticator>,
        rewrite: Arc<Rewrite>,
        login: Option<LoginForwarder>,
        limits: RateLimits,
    ) -> Self {
        AuthApi {
            sessions,
            auth,
            rewrite,
            login,
            jwks: crate::auth::keys::jwks_json(keys),
            max_body: config.server.max_auth_body_bytes,
            body_timeout: config.server.header_read_timeout,
            cookie: config.sessions.refresh_cookie.clone(),
            limits,
        }
    }

    /// Whether `path` is served here rather than forwarded. With login disabled,
    /// its default path is an ordinary route (SPEC 4.1).
    pub fn owns(&self, path: &str) -> bool {
        match &self.login {
            Some(l) if path == l.path() => true,
            _ => path.starts_with(PREFIX) && (self.login.is_some() || path != DEFAULT_LOGIN_PATH),
        }
    }

    /// Whether `path` is the login upstream's own path, refused as a proxied route.
    pub fn guards_login_upstream(&self, path: &str) -> bool {
        self.login.as_ref().is_some_and(|l| l.guards(path))
    }

    /// The upstream's login control headers, removed from every response.
    pub fn login_control_headers(&self) -> Option<[&HeaderName; 2]> {
        self.login.as_ref().map(LoginForwarder::control_headers)
    }

    pub fn jwks(&self, method: &Method, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return Err(method_not_allowed());
        }
        let extra = vec![(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )];
        Ok(answer(200, self.jwks.clone(), extra, ctx))
    }

    pub async fn handle(
        &self,
        fwd: &Forwarder,
        req: Request<Incoming>,
        ctx: &mut RequestCtx,
        path: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (mut head, mut incoming) = req.into_parts();
        if !head.headers.contains_key(http::header::HOST) {
            // HTTP/2 names the host in :authority; the origin checks compare with it.
            if let Some(host) = head
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                head.headers.insert(http::header::HOST, host);
            }
        }
        let method = head.method.clone();
        let headers = &head.headers;
        let client = Client {
            ip: ctx.client.ip.to_string(),
            user_agent: user_agent(headers),
        };
        if let Some(login) = self.login.as_ref().filter(|l| path == l.path()) {
            ctx.route = Route::Login;
            expect(&method, Method::POST)?;
            if self.cookie.is_some() && from_another_site(headers) {
                // Login CSRF: another site must not sign a browser into an
                // account of the attacker's choosing.
                return Err(ApiError::Forbidden(
                    "a login in cookie mode must come from this site's own origin",
                ));
            }
            self.limits
                .login
                .check(ctx.client.ip)
                .await
                .map_err(|s| ApiError::RateLimited {
                    retry_after_secs: s,
                })?;
            let body = self.read_body(headers, &mut incoming).await?;
            return login
                .forward(
                    fwd,
                    &self.rewrite,
                    &self.sessions,
                    head,
                    ctx,
                    body,
                    &client,
                    self.cookie.as_ref(),
                )
                .await;
        }
        let rest = &path[PREFIX.len()..];
        match rest {
            "refresh" => {
                ctx.route = Route::Refresh;
                expect(&method, Method::POST)?;
                self.limits
                    .refresh
                    .check(ctx.client.ip)
                    .await
                    .map_err(|s| ApiError::RateLimited {
                        retry_after_secs: s,
                    })?;
                let body = self.read_body(headers, &mut incoming).await?;
                let token = self.refresh_token_from(headers, &body)?.ok_or_else(|| {
                    ApiError::InvalidRequest(
                        "Send the refresh token as {\"refresh_token\": \"...\"}.".into(),
                    )
                })?;
                let tokens = self.sessions.refresh(&token, &client).await?;
                Ok(self.tokens(ctx, &tokens))
            }
            "sessions" => {
                ctx.route = Route::Sessions;
                expect(&method, Method::GET)?;
                let who = self.caller(headers)?;
                let q = page_query(head.uri.query(), SESSIONS_PAGE)?;
                let page = self
                    .sessions
                    .list(&who, q.limit, q.before.as_deref())
                    .await?;
                // Typed straight to bytes: one page, no intermediate JSON tree.
                let body = serde_json::to_vec(&page)
                    .map_err(|e| ApiError::internal("encoding the sessions page", e))?;
                Ok(answer(200, body, vec![], ctx))
            }
            "security-events" => {
                ctx.route = Route::SecurityEvents;
                expect(&method, Method::GET)?;
                let who = self.caller(headers)?;
                let q = page_query(head.uri.query(), EVENTS_PAGE)?;
                let page = self
                    .sessions
                    .security_events(&who, q.limit, q.before.as_deref())
                    .await?;
                let body = serde_json::to_vec(&page)
                    .map_err(|e| ApiError::internal("encoding the events page", e))?;
                Ok(answer(200, body, vec![], ctx))
            }
            "sessions/revoke-all" => {
                ctx.route = Route::Sessions;
                expect(&method, Method::POST)?;
                let who = self.caller(headers)?;
                let body = self.read_body(headers, &mut incoming).await?;
                let opts: RevokeAllBody = parse_json_or_empty(&body)?;
                let n = self
                    .sessions
                    .revoke_all(&who, opts.keep_current, &client)
                    .await?;
                let body = serde_json::to_vec(&serde_json::json!({ "revoked": n }))
                    .map_err(|e| ApiError::internal("encoding the revoke-all answer", e))?;
                Ok(answer(200, body, vec![], ctx))
            }
            "logout" => {
                ctx.route = Route::Logout;
                expect(&method, Method::POST)?;
                let body = self.read_body(headers, &mut incoming).await?;
                match self.optional_caller(headers) {
                    Ok(Some(who)) => self.sessions.logout_access(&who, &client).await?,
                    Ok(None) => {
                        let token = self
                            .refresh_token_from(headers, &body)?
                            .ok_or(ApiError::MissingToken)?;
                        self.sessions.logout_refresh(&token, &client).await?;
                    }
                    // An expired or otherwise refused access token does not
                    // keep a session alive that its refresh token can end.
                    Err(refused) => match self.refresh_token_from(headers, &body)? {
                        Some(token) => self.sessions.logout_refresh(&token, &client).await?,
                        None => return Err(refused),
                    },
                }
                let extra = self
                    .cookie
                    .as_ref()
                    .map(|c| (SET_COOKIE, clear_cookie(c)))
                    .into_iter()
                    .collect();
                Ok(answer(204, Vec::new(), extra, ctx))
            }
            _ => {
                let Some(id) = rest
                    .strip_prefix("sessions/")
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                else {
                    return Err(ApiError::NotFound);
                };
                ctx.route = Route::Sessions;
                expect(&method, Method::DELETE)?;
                let who = self.caller(headers)?;
                self.sessions.revoke_one(&who, id, &client).await?;
                Ok(answer(204, Vec::new(), vec![], ctx))
            }
        }
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Arc<Verified>, ApiError> {
        self.optional_caller(headers)?.ok_or(ApiError::MissingToken)
    }

    fn optional_caller(&self, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, ApiError> {
        self.auth.authenticate(headers.get(AUTHORIZATION))
    }

    /// Reads the whole request body, refusing more than `server.max_auth_body_bytes`.
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: &mut Incoming,
    ) -> Result<Bytes, ApiError> {
        if let Some(len) = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > self.max_body {
                return Err(ApiError::PayloadTooLarge);
            }
        }
        let read = async {
            let mut out = bytes::BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame
                    .map_err(|_| ApiError::BadRequest("the request body could not be read"))?;
                if let Some(chunk) = frame.data_ref() {
                    if out.len() + chunk.len() > self.max_body {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    out.extend_from_slice(chunk);
                }
            }
            Ok(out.freeze())
        };
        // A client that trickles its body holds a connection and a buffer:
        // it gets as long as for its head.
        tokio::time::timeout(self.body_timeout, read)
            .await
            .map_err(|_| ApiError::BadRequest("the request body did not arrive in time"))?
    }

    /// The refresh token from the JSON body, else from the cookie (cookie mode),
    /// in which case the request must come from our own origin (CSRF).
    fn refresh_token_from(&self, req: &HeaderMap, body: &[u8]) -> Result<Option<String>, ApiError> {
        let parsed: RefreshBody = parse_json_or_empty(body)?;
        if let Some(t) = parsed.refresh_token.filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        let Some(cookie) = &self.cookie else {
            return Ok(None);
        };
        let mut ours = cookie_values(req.get_all(COOKIE).iter(), &cookie.name);
        let Some(token) = ours.next() else {
            return Ok(None);
        };
        if ours.next().is_some() {
            // Cookie tossing: a sibling site planted a second cookie of this
            // name; which one is the browser's own cannot be told.
            return Err(ApiError::InvalidRequest(
                "The request carries more than one refresh cookie.".into(),
            ));
        }
        if origin_matches_host(req) != Some(true) {
            return Err(ApiError::Forbidden(
                "a cookie-authenticated request must come from this site's own origin",
            ));
        }
        Ok(Some(token))
    }

    fn tokens(&self, ctx: &RequestCtx, t: &TokenResponse) -> Response<Body> {
        let body = match serde_json::to_vec(t) {
            Ok(body) => body,
            Err(e) => {
                let e = ApiError::internal("encoding the tokens", e);
                return super::respond::error(&e, ctx);
            }
        };
        let extra = self
            .cookie
            .as_ref()
            .and_then(|c| set_cookie(c, &t.refresh_token))
            .map(|v| (SET_COOKIE, v))
            .into_iter()
            .collect();
        answer(200, body, extra, ctx)
    }
}

fn expect(method: &Method, want: Method) -> Result<(), ApiError> {
    if *method == want {
        Ok(())
    } else {
        Err(method_not_allowed())
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::InvalidRequest("This method is not allowed on this path.".into())
}

fn parse_json_or_empty<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    crate::json::object_or_empty(body).ok_or_else(|| {
        ApiError::InvalidRequest("The request body is not valid JSON of the expected shape.".into())
    })
}

/// Every value of the cookie `name`, across all Cookie headers.
fn cookie_values<'a>(
    headers: impl Iterator<Item = &'a HeaderValue> + 'a,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    headers
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the Origin (or, lacking it, the Referer) names the host the
/// request was sent to; `None` when the request carries neither.
fn origin_matches_host(req: &HeaderMap) -> Option<bool> {
    let origin = req
        .get(http::header::ORIGIN)
        .or_else(|| req.get(http::header::REFERER))?;
    let host = req.get(http::header::HOST).and_then(|v| v.to_str().ok());
    let origin = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<http::Uri>().ok());
    Some(match (host, origin) {
        (Some(host), Some(o)) => o
            .authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(host)),
        _ => false,
    })
}

/// A browser request sent from another site. Browsers name the sending page
/// on every cross-origin POST (`Origin`, and `Sec-Fetch-Site` in current
/// ones); a request with neither comes from a non-browser client, which
/// login CSRF cannot use.
fn from_another_site(req: &HeaderMap) -> bool {
    let fetch_site_foreign = req
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    fetch_site_foreign || origin_matches_host(req) == Some(false)
}

fn cookie_attributes(c: &RefreshCookieConfig, max_age: Option<u64>) -> String {
    let same_site = match c.same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    let mut s = format!("; Path={}; HttpOnly; SameSite={same_site}", c.path);
    if c.secure {
        s.push_str("; Secure");
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    s
}

pub fn set_cookie(c: &RefreshCookieConfig, token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{}={token}{}", c.name, cookie_attributes(c, None))).ok()
}

fn clear_cookie(c: &RefreshCookieConfig) -> HeaderValue {
    HeaderValue::from_str(&format!("{}={}", c.name, cookie_attributes(c, Some(0))))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_cookie_is_found_among_others() {
        let hv = [HeaderValue::from_static("a=1; sg_refresh=tok; b=2")];
        assert_eq!(
            cookie_values(hv.iter(), "sg_refresh").collect::<Vec<_>>(),
            ["tok"]
        );
        assert_eq!(cookie_values(hv.iter(), "sg").next(), None);
        let two = [
            HeaderValue::from_static("sg_refresh=a"),
            HeaderValue::from_static("x=1; sg_refresh = b"),
        ];
        assert_eq!(cookie_values(two.iter(), "sg_refresh").count(), 2);
    }

    #[test]
    fn refresh_cookies_are_http_only_and_scoped() {
        let c = RefreshCookieConfig {
            name: "sg_refresh".into(),
            path: "/v1/auth".into(),
            secure: true,
            same_site: SameSite::Strict,
        };
        let v = set_cookie(&c, "abc").unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "sg_refresh=abc; Path=/v1/auth; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(clear_cookie(&c).to_str().unwrap().contains("Max-Age=0"));
    }
}
