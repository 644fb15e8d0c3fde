//! The `/v1/auth` routes and the JWKS, served from `request_filter` (SPEC 4).

use std::sync::Arc;

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, SET_COOKIE};
use http::Method;
use pingora::proxy::Session;
use serde::Deserialize;

use super::client::user_agent;
use super::gateway::{Gateway, RequestCtx};
use super::login::LoginForwarder;
use super::query::page_query;
use super::respond::send;
use crate::auth::Verified;
use crate::config::{Config, RefreshCookie, SameSite};
use crate::errors::ApiError;
use crate::sessions::ratelimit::RateLimiter;
use crate::sessions::{Client, Sessions, TokenResponse};

const PREFIX: &str = "/v1/auth/";
const DEFAULT_LOGIN_PATH: &str = "/v1/auth/login";
/// GET /v1/auth/sessions without `limit` (SPEC 4.4).
const SESSIONS_PAGE: usize = 100;
/// GET /v1/auth/security-events without `limit` (SPEC 4.8).
const EVENTS_PAGE: usize = 50;

pub struct AuthApi {
    pub sessions: Arc<Sessions>,
    login: Option<LoginForwarder>,
    jwks: Vec<u8>,
    max_body: usize,
    cookie: Option<RefreshCookie>,
    login_limit: RateLimiter,
    refresh_limit: RateLimiter,
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
    pub fn new(config: &Config, sessions: Arc<Sessions>, login: Option<LoginForwarder>) -> Self {
        AuthApi {
            sessions,
            login,
            jwks: crate::auth::keys::jwks_json(&config.tokens.keys),
            max_body: config.server.max_auth_body_bytes,
            cookie: config.sessions.refresh_cookie.clone(),
            login_limit: RateLimiter::new(config.rate_limits.login),
            refresh_limit: RateLimiter::new(config.rate_limits.refresh),
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

    pub async fn jwks(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ApiError> {
        if !matches!(session.req_header().method, Method::GET | Method::HEAD) {
            return Err(method_not_allowed());
        }
        let extra = vec![(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )];
        send(session, 200, self.jwks.clone(), extra, ctx)
            .await
            .map_err(|_| ApiError::Internal)?;
        Ok(())
    }

    pub async fn handle(
        &self,
        gw: &Gateway,
        session: &mut Session,
        ctx: &mut RequestCtx,
        path: &str,
    ) -> Result<(), ApiError> {
        let method = session.req_header().method.clone();
        let client = Client {
            ip: ctx.client.ip.to_string(),
            user_agent: user_agent(session.req_header()),
        };
        if let Some(login) = self.login.as_ref().filter(|l| path == l.path()) {
            ctx.route = "login";
            expect(&method, Method::POST)?;
            if self.cookie.is_some() && from_another_site(session.req_header()) {
                // Login CSRF: another site must not sign a browser into an
                // account of the attacker's choosing.
                return Err(ApiError::Forbidden(
                    "a login in cookie mode must come from this site's own origin",
                ));
            }
            self.login_limit
                .check(ctx.client.ip)
                .map_err(|s| ApiError::RateLimited {
                    retry_after_secs: s,
                })?;
            let body = self.read_body(session).await?;
            return login
                .forward(
                    gw,
                    &self.sessions,
                    session,
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
                ctx.route = "refresh";
                expect(&method, Method::POST)?;
                self.refresh_limit
                    .check(ctx.client.ip)
                    .map_err(|s| ApiError::RateLimited {
                        retry_after_secs: s,
                    })?;
                let body = self.read_body(session).await?;
                let token = self.refresh_token_from(session, &body)?.ok_or_else(|| {
                    ApiError::InvalidRequest(
                        "Send the refresh token as {\"refresh_token\": \"...\"}.".into(),
                    )
                })?;
                let tokens = self.sessions.refresh(&token, &client).await?;
                self.send_tokens(session, ctx, &tokens).await
            }
            "sessions" => {
                ctx.route = "sessions";
                expect(&method, Method::GET)?;
                let who = self.caller(gw, session)?;
                let q = page_query(session.req_header().uri.query(), SESSIONS_PAGE)?;
                let page = self
                    .sessions
                    .list(&who, q.limit, q.before.as_deref())
                    .await?;
                // Typed straight to bytes: one page, no intermediate JSON tree.
                let body = serde_json::to_vec(&page).map_err(|_| ApiError::Internal)?;
                send_ok(session, ctx, 200, body, vec![]).await
            }
            "security-events" => {
                ctx.route = "security_events";
                expect(&method, Method::GET)?;
                let who = self.caller(gw, session)?;
                let q = page_query(session.req_header().uri.query(), EVENTS_PAGE)?;
                let page = self
                    .sessions
                    .security_events(&who, q.limit, q.before.as_deref())
                    .await?;
                let body = serde_json::to_vec(&page).map_err(|_| ApiError::Internal)?;
                send_ok(session, ctx, 200, body, vec![]).await
            }
            "sessions/revoke-all" => {
                ctx.route = "sessions";
                expect(&method, Method::POST)?;
                let who = self.caller(gw, session)?;
                let body = self.read_body(session).await?;
                let opts: RevokeAllBody = parse_json_or_empty(&body)?;
                let n = self
                    .sessions
                    .revoke_all(&who, opts.keep_current, &client)
                    .await?;
                let body = serde_json::to_vec(&serde_json::json!({ "revoked": n }))
                    .map_err(|_| ApiError::Internal)?;
                send_ok(session, ctx, 200, body, vec![]).await
            }
            "logout" => {
                ctx.route = "logout";
                expect(&method, Method::POST)?;
                let body = self.read_body(session).await?;
                match self.optional_caller(gw, session) {
                    Ok(Some(who)) => self.sessions.logout_access(&who, &client).await?,
                    Ok(None) => {
                        let token = self
                            .refresh_token_from(session, &body)?
                            .ok_or(ApiError::MissingToken)?;
                        self.sessions.logout_refresh(&token, &client).await?;
                    }
                    // An expired or otherwise refused access token does not
                    // keep a session alive that its refresh token can end.
                    Err(refused) => match self.refresh_token_from(session, &body)? {
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
                send_ok(session, ctx, 204, Vec::new(), extra).await
            }
            _ => {
                let Some(id) = rest
                    .strip_prefix("sessions/")
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                else {
                    return Err(ApiError::NotFound);
                };
                ctx.route = "sessions";
                expect(&method, Method::DELETE)?;
                let who = self.caller(gw, session)?;
                self.sessions.revoke_one(&who, id, &client).await?;
                send_ok(session, ctx, 204, Vec::new(), vec![]).await
            }
        }
    }

    fn caller(&self, gw: &Gateway, session: &Session) -> Result<Arc<Verified>, ApiError> {
        self.optional_caller(gw, session)?
            .ok_or(ApiError::MissingToken)
    }

    fn optional_caller(
        &self,
        gw: &Gateway,
        session: &Session,
    ) -> Result<Option<Arc<Verified>>, ApiError> {
        gw.auth
            .authenticate(session.req_header().headers.get(AUTHORIZATION))
    }

    /// Reads the whole request body, refusing more than `server.max_auth_body_bytes`.
    pub async fn read_body(&self, session: &mut Session) -> Result<Vec<u8>, ApiError> {
        if let Some(len) = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > self.max_body {
                return Err(ApiError::PayloadTooLarge);
            }
        }
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.to_vec()),
                Err(_) => return Err(ApiError::BadRequest("the request body could not be read")),
            }
        }
    }

    /// The refresh token from the JSON body, else from the cookie (cookie mode),
    /// in which case the request must come from our own origin (CSRF).
    fn refresh_token_from(
        &self,
        session: &Session,
        body: &[u8],
    ) -> Result<Option<String>, ApiError> {
        let parsed: RefreshBody = parse_json_or_empty(body)?;
        if let Some(t) = parsed.refresh_token.filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        let Some(cookie) = &self.cookie else {
            return Ok(None);
        };
        let req = session.req_header();
        let mut ours = cookie_values(req.headers.get_all(COOKIE).iter(), &cookie.name);
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

    async fn send_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        t: &TokenResponse,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_vec(t).map_err(|_| ApiError::Internal)?;
        let extra = self
            .cookie
            .as_ref()
            .and_then(|c| set_cookie(c, &t.refresh_token))
            .map(|v| (SET_COOKIE, v))
            .into_iter()
            .collect();
        send_ok(session, ctx, 200, body, extra).await
    }
}

pub async fn send_ok(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Result<(), ApiError> {
    send(session, status, body, extra, ctx).await.map_err(|e| {
        tracing::debug!(error = %e, "client went away before the answer was written");
        ApiError::Internal
    })
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| {
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
fn origin_matches_host(req: &pingora::http::RequestHeader) -> Option<bool> {
    let origin = req
        .headers
        .get(http::header::ORIGIN)
        .or_else(|| req.headers.get(http::header::REFERER))?;
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
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
fn from_another_site(req: &pingora::http::RequestHeader) -> bool {
    let fetch_site_foreign = req
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    fetch_site_foreign || origin_matches_host(req) == Some(false)
}

fn cookie_attributes(c: &RefreshCookie, max_age: Option<u64>) -> String {
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

pub fn set_cookie(c: &RefreshCookie, token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{}={token}{}", c.name, cookie_attributes(c, None))).ok()
}

fn clear_cookie(c: &RefreshCookie) -> HeaderValue {
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
        let c = RefreshCookie {
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
