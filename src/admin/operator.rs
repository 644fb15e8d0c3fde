//! The operator API (SPEC 9) on the admin listener: act on any user's
//! sessions with the admin bearer token. Off (every path 404) unless a token
//! is configured.

use std::net::IpAddr;
use std::sync::Arc;

use aws_lc_rs::digest;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::errors::ApiError;
use crate::proxy::query::{page_query, PageQuery};
use crate::sessions::{valid_reason, Client, EventFilter, Sessions};

/// Where every operator path starts.
pub const PREFIX: &str = "/admin/v1/";
/// Bodies here are a reason at most.
const MAX_BODY: usize = 16 * 1024;
/// SPEC 9: a user id may hold any character a subject may hold.
const MAX_ID_BYTES: usize = 1024;

pub struct Operator {
    /// SHA-256 of the token: compared in constant time, whatever its length.
    token_digest: Vec<u8>,
    sessions: Arc<Sessions>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeAllBody {
    reason: Option<String>,
}

/// What a path names.
enum Target {
    Events,
    UserSessions(String),
    UserRevokeAll(String),
    Session(String),
}

impl Operator {
    pub fn new(token: &SecretString, sessions: Arc<Sessions>) -> Operator {
        Operator {
            token_digest: sha256(token.expose_secret().as_bytes()),
            sessions,
        }
    }

    /// Answers one request whose path starts with [`PREFIX`].
    pub async fn handle(&self, req: Request<Incoming>, peer: IpAddr) -> Response<Vec<u8>> {
        match self.answer(req, peer).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Response<Vec<u8>>, ApiError> {
        self.authorize(&req)?;
        let target = parse(req.uri().path())?;
        let client = Client {
            ip: peer.to_string(),
            user_agent: Client::user_agent_of(req.headers().get(http::header::USER_AGENT)),
        };
        let method = req.method().clone();
        match (target, method) {
            (Target::UserSessions(user), Method::GET) => {
                let q = page_query(req.uri().query(), 100)?;
                let page = self
                    .sessions
                    .admin_list(&user, q.limit, q.before.as_deref())
                    .await?;
                // SPEC 9 shows the last page as `{"sessions": [...]}`: `next`
                // only when another page follows.
                match page.next {
                    Some(next) => json(
                        200,
                        &serde_json::json!({ "sessions": page.sessions, "next": next }),
                    ),
                    None => json(200, &serde_json::json!({ "sessions": page.sessions })),
                }
            }
            (Target::UserRevokeAll(user), Method::POST) => {
                let body = read_body(req.into_body()).await?;
                let reason = parse_reason(&body)?;
                let n = self
                    .sessions
                    .admin_revoke_all(&user, reason.as_deref(), &client)
                    .await?;
                json(200, &serde_json::json!({ "revoked": n }))
            }
            (Target::Events, Method::GET) => {
                let (filter, q) = audit_query(req.uri().query())?;
                let page = self
                    .sessions
                    .audit_events(&filter, q.limit, q.before.as_deref())
                    .await?;
                json(200, &page)
            }
            (Target::Session(id), Method::DELETE) => {
                self.sessions.admin_revoke_one(&id, &client).await?;
                Ok(reply(204, Vec::new()))
            }
            _ => Err(ApiError::InvalidRequest(
                "This method is not allowed on this path.".into(),
            )),
        }
    }

    /// `Authorization: Bearer <admin token>`, compared in constant time; a
    /// user's access token is just a wrong token here.
    fn authorize<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        let mut values = req.headers().get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::InvalidToken("missing_admin_token"));
        };
        let presented = value
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii())
            .ok_or(ApiError::InvalidToken("missing_admin_token"))?;
        let digest = sha256(presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(&digest, &self.token_digest)
            .map_err(|_| ApiError::InvalidToken("wrong_admin_token"))
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// `/admin/v1/users/{user_id}/sessions`, `/admin/v1/users/{user_id}/revoke-all`,
/// `/admin/v1/sessions/{id}`; ids percent-decoded, anything else 404.
fn parse(path: &str) -> Result<Target, ApiError> {
    let rest = path.strip_prefix(PREFIX).ok_or(ApiError::NotFound)?;
    if rest == "security-events" {
        return Ok(Target::Events);
    }
    if let Some(user_part) = rest.strip_prefix("users/") {
        let (raw, action) = user_part.rsplit_once('/').ok_or(ApiError::NotFound)?;
        let user = decode_id(raw)?;
        return match action {
            "sessions" => Ok(Target::UserSessions(user)),
            "revoke-all" => Ok(Target::UserRevokeAll(user)),
            _ => Err(ApiError::NotFound),
        };
    }
    if let Some(raw) = rest.strip_prefix("sessions/") {
        return Ok(Target::Session(decode_id(raw)?));
    }
    Err(ApiError::NotFound)
}

/// One path segment, percent-decoded: `/` separates segments, so a raw one
/// is not part of an id (an encoded `%2F` is). The result must be text.
fn decode_id(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.contains('/') {
        return Err(ApiError::NotFound);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_id("a malformed % escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.len() > MAX_ID_BYTES {
        return Err(bad_id("longer than 1024 bytes"));
    }
    String::from_utf8(out).map_err(|_| bad_id("not UTF-8 once decoded"))
}

/// `user_id`, `type`, `since` (RFC 3339), `limit`, `before`: each at most
/// once; anything else, or a malformed value, is 400 `invalid_request`.
fn audit_query(query: Option<&str>) -> Result<(EventFilter, PageQuery), ApiError> {
    let bad = |why: &str| ApiError::InvalidRequest(format!("Bad query: {why}.").into());
    let mut filter = EventFilter::default();
    let mut paging = Vec::new();
    let mut seen = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&name) {
            return Err(bad("a parameter appears twice"));
        }
        seen.push(name);
        match name {
            "user_id" => filter.user_id = Some(decode_id(value)?),
            "type" => {
                filter.kind = Some(
                    EventFilter::parse_kind(value)
                        .ok_or_else(|| bad("`type` is not an event type"))?,
                )
            }
            "since" => {
                let decoded = decode_id(value)?;
                filter.since = Some(
                    EventFilter::parse_since(&decoded)
                        .ok_or_else(|| bad("`since` must be an RFC 3339 time"))?,
                )
            }
            "limit" | "before" => paging.push(pair),
            _ => {
                return Err(bad(
                    "only `user_id`, `type`, `since`, `limit` and `before` are accepted",
                ))
            }
        }
    }
    let paging = page_query(Some(&paging.join("&")), 50)?;
    Ok((filter, paging))
}

fn bad_id(why: &str) -> ApiError {
    ApiError::InvalidRequest(format!("The id in the path is {why}.").into())
}

/// `{"reason": "password_changed"}`: 1-64 of `[a-z0-9_]`; an empty body is no reason.
fn parse_reason(body: &[u8]) -> Result<Option<String>, ApiError> {
    let parsed: RevokeAllBody = crate::json::object_or_empty(body).ok_or_else(|| {
        ApiError::InvalidRequest("The body must be {\"reason\": \"...\"} or empty.".into())
    })?;
    match parsed.reason {
        None => Ok(None),
        Some(r) if valid_reason(&r) => Ok(Some(r)),
        Some(_) => Err(ApiError::InvalidRequest(
            "`reason` must be 1-64 characters of a-z, 0-9 and _.".into(),
        )),
    }
}

async fn read_body(body: Incoming) -> Result<Vec<u8>, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::BadRequest("the request body could not be read")),
    }
}

fn json(status: u16, value: &impl serde::Serialize) -> Result<Response<Vec<u8>>, ApiError> {
    let body =
        serde_json::to_vec(value).map_err(|e| ApiError::internal("encoding an answer", e))?;
    Ok(reply(status, body))
}

fn reply(status: u16, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(status)
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_LENGTH, body.len());
    if !body.is_empty() {
        b = b.header(http::header::CONTENT_TYPE, "application/json");
    }
    b.body(body).expect("static response parts are valid")
}

/// SPEC 4's JSON error; a 401 challenges for the admin realm (SPEC 9).
pub fn error(e: &ApiError) -> Response<Vec<u8>> {
    if let ApiError::Internal(why) = e {
        tracing::error!(error = %why, "operator API request failed");
    } else if e.status() >= 500 {
        tracing::warn!(error = e.code(), "operator API request failed");
    }
    let mut resp = reply(e.status(), e.body());
    if e.status() == 401 {
        let challenge = format!(
            r#"Bearer realm="sessiongate-admin", error="invalid_token", error_description="{}""#,
            e.code()
        );
        if let Ok(v) = http::HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_are_decoded_segments() {
        let user = |p: &str| match parse(p) {
            Ok(Target::UserSessions(u)) => Some(u),
            _ => None,
        };
        assert_eq!(
            user("/admin/v1/users/alice/sessions").as_deref(),
            Some("alice")
        );
        assert_eq!(
            user("/admin/v1/users/a%2Fb%20%7Bc%7D%C3%A9/sessions").as_deref(),
            Some("a/b {c}é")
        );
        assert!(user("/admin/v1/users/a/b/sessions").is_none());
        assert!(user("/admin/v1/users//sessions").is_none());
        assert!(matches!(
            parse("/admin/v1/users/%zz/sessions"),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse("/admin/v1/users/%ff/sessions"),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse("/admin/v1/users/a/other"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            parse("/admin/v1/nothing"),
            Err(ApiError::NotFound)
        ));
    }

    #[test]
    fn reasons_are_short_snake_case() {
        assert_eq!(parse_reason(b"").unwrap(), None);
        assert_eq!(parse_reason(b"{}").unwrap(), None);
        assert_eq!(
            parse_reason(br#"{"reason":"password_changed"}"#)
                .unwrap()
                .as_deref(),
            Some("password_changed")
        );
        for bad in [
            &br#"{"reason":""}"#[..],
            br#"{"reason":"Password"}"#,
            br#"{"reason":"a b"}"#,
            br#"{"reason":"x","other":1}"#,
            br#"{"reason":7}"#,
            b"not json",
        ] {
            assert!(
                parse_reason(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"reason":"{}"}}"#, "a".repeat(65));
        assert!(parse_reason(long.as_bytes()).is_err());
    }
}
