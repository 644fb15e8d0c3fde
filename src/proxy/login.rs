//! Login delegation (SPEC 4.1): the upstream checks credentials as it always
//! has; a 2xx carrying the subject header becomes a session.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::BodyExt;

use super::api::set_cookie;
use super::body::{Body, Outgoing};
use super::forward::{unavailable, Forwarder};
use super::gateway::RequestCtx;
use super::respond::{answer, X_REQUEST_ID};
use super::rewrite::{strip_response, Decided, Rewrite};
use crate::config::{LoginConfig, RefreshCookieConfig};
use crate::errors::ApiError;
use crate::sessions::{Client, Sessions};

/// Bounds on what an upstream may put in a session.
const MAX_SUBJECT_BYTES: usize = 256;
/// Sized with the verified-token cache's byte budget (auth/cache.rs).
const MAX_CLAIMS_BYTES: usize = crate::auth::cache::MAX_CLAIMS_BYTES;
/// A failed login's answer is relayed whole; refuse absurd ones.
const MAX_RELAYED_BODY: usize = 1 << 20;

pub struct LoginForwarder {
    cfg: LoginConfig,
    /// `upstream.revoke_header`: never honoured on the login call (SPEC 10),
    /// and not relayed either.
    revoke_header: Option<HeaderName>,
}

impl LoginForwarder {
    pub fn new(cfg: LoginConfig, revoke_header: Option<HeaderName>) -> Self {
        LoginForwarder { cfg, revoke_header }
    }

    pub fn path(&self) -> &str {
        &self.cfg.path
    }

    /// Whether a proxied request for `path` (normalized) would reach the
    /// upstream's credential check directly, around the login rate limit.
    /// Matched as loosely as upstream servers route: any case, a trailing
    /// `/`, `;parameters` on the last segment.
    pub fn guards(&self, path: &str) -> bool {
        if self.cfg.allow_direct_upstream_path {
            return false;
        }
        let bare = path.split(';').next().unwrap_or(path);
        let bare = match bare.strip_suffix('/') {
            Some(b) if !b.is_empty() => b,
            _ => bare,
        };
        bare.eq_ignore_ascii_case(&self.cfg.upstream_path)
    }

    /// The upstream's login control headers: never shown to a client.
    pub fn control_headers(&self) -> [&HeaderName; 2] {
        [&self.cfg.subject_header, &self.cfg.claims_header]
    }

    /// Forwards the credentials to the upstream's login path; its answer
    /// becomes a session, or is relayed as it is.
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        fwd: &Forwarder,
        rewrite: &Rewrite,
        sessions: &Sessions,
        mut head: Parts,
        ctx: &mut RequestCtx,
        body: Bytes,
        client: &Client,
        cookie: Option<&RefreshCookieConfig>,
    ) -> Result<Response<Body>, ApiError> {
        let target =
            self.cfg.upstream_path.parse().map_err(|e| {
                ApiError::internal("the login.upstream_path as a request target", e)
            })?;
        rewrite.apply(
            &mut head,
            Some(target),
            &[&self.cfg.subject_header, &self.cfg.claims_header],
            &Decided {
                client: &ctx.client,
                peer: &ctx.peer,
                identity: None,
                request_id: &ctx.request_id,
                upgrade: false,
                upstream_authority: fwd.upstream().authority(),
            },
        )?;
        // The body was read already: its length is known, and the upstream
        // has nothing to wait for (`Expect` went with the hop-by-hop headers).
        head.headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let req = Request::from_parts(head, Outgoing::Full((!body.is_empty()).then_some(body)));
        ctx.upstream_start = Some(std::time::Instant::now());
        let (resp, resp_body) = self.exchange(fwd, req).await?;
        let subject = resp.headers().get(&self.cfg.subject_header);
        if !resp.status().is_success() || subject.is_none() {
            return Ok(self.relay(ctx, resp, resp_body));
        }
        let subject = valid_subject(subject)?;
        let claims = valid_claims(resp.headers().get(&self.cfg.claims_header))?;
        let tokens = sessions.login(&subject, claims, client).await?;
        let body = serde_json::to_vec(&tokens)
            .map_err(|e| ApiError::internal("encoding the tokens", e))?;
        let extra = cookie
            .and_then(|c| set_cookie(c, &tokens.refresh_token))
            .map(|v| (SET_COOKIE, v))
            .into_iter()
            .collect();
        Ok(answer(200, body, extra, ctx))
    }

    /// One request/response with the upstream, the body read whole (bounded).
    /// Interim answers (100 Continue, 103 Early Hints) never get here (hyper
    /// skips them); a 101 to a request that asked for no upgrade is a broken upstream.
    async fn exchange(
        &self,
        fwd: &Forwarder,
        req: Request<Outgoing>,
    ) -> Result<(Response<()>, Bytes), ApiError> {
        let read = async {
            let (resp, conn) = fwd.exchange(req).await?;
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(bad_upstream("it switched protocols"));
            }
            let (head, body) = fwd.stream(resp, conn).into_parts();
            let mut out = bytes::BytesMut::new();
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| unavailable())?;
                if let Some(chunk) = frame.data_ref() {
                    if out.len() + chunk.len() > MAX_RELAYED_BODY {
                        return Err(ApiError::UpstreamUnavailable(
                            "The upstream's login answer is too large.".into(),
                        ));
                    }
                    out.extend_from_slice(chunk);
                }
            }
            Ok((Response::from_parts(head, ()), out.freeze()))
        };
        // The whole exchange, body included, within the upstream timeout.
        tokio::time::timeout(fwd.upstream().timeout(), read)
            .await
            .map_err(|_| ApiError::UpstreamTimeout)?
    }

    /// The upstream's own answer, unchanged but for the subject/claims
    /// headers, hop-by-hop headers and framing.
    fn relay(&self, ctx: &RequestCtx, resp: Response<()>, body: Bytes) -> Response<Body> {
        let (mut head, ()) = resp.into_parts();
        head.version = http::Version::default();
        strip_response(&mut head.headers, false);
        head.headers.remove(&self.cfg.subject_header);
        head.headers.remove(&self.cfg.claims_header);
        if let Some(name) = &self.revoke_header {
            head.headers.remove(name);
        }
        head.headers.remove(http::header::CONTENT_LENGTH);
        head.headers.insert(X_REQUEST_ID, ctx.request_id.clone());
        Response::from_parts(head, Body::full(body))
    }
}

fn bad_upstream(why: &'static str) -> ApiError {
    tracing::warn!(why, "the upstream's login answer cannot become a session");
    ApiError::UpstreamUnavailable(
        format!("The upstream's login answer was not usable: {why}.").into(),
    )
}

fn valid_subject(v: Option<&HeaderValue>) -> Result<String, ApiError> {
    let s = v.and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if s.is_empty() {
        return Err(bad_upstream("the subject header is empty or not text"));
    }
    if s.len() > MAX_SUBJECT_BYTES {
        return Err(bad_upstream("the subject is longer than 256 bytes"));
    }
    Ok(s.to_owned())
}

/// The claims header must be a JSON object (absent means `{}`); it is stored compact.
fn valid_claims(v: Option<&HeaderValue>) -> Result<String, ApiError> {
    let Some(v) = v else {
        return Ok("{}".into());
    };
    if v.len() > MAX_CLAIMS_BYTES {
        return Err(bad_upstream("the claims header is larger than 512 bytes"));
    }
    match serde_json::from_slice::<serde_json::Value>(v.as_bytes()) {
        Ok(serde_json::Value::Object(m)) => {
            serde_json::to_string(&m).map_err(|e| ApiError::internal("re-encoding the claims", e))
        }
        Ok(_) => Err(bad_upstream("the claims header is JSON but not an object")),
        Err(_) => Err(bad_upstream("the claims header is not JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_must_be_a_small_json_object() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(valid_claims(None).unwrap(), "{}");
        assert_eq!(
            valid_claims(Some(&hv(r#"{ "role" : "admin" }"#))).unwrap(),
            r#"{"role":"admin"}"#
        );
        assert!(valid_claims(Some(&hv(r#"["admin"]"#))).is_err());
        assert!(valid_claims(Some(&hv("role=admin"))).is_err());
        let sized = |n: usize| format!(r#"{{"blob":"{}"}}"#, "x".repeat(n - 11));
        assert!(valid_claims(Some(&hv(&sized(MAX_CLAIMS_BYTES)))).is_ok());
        assert!(valid_claims(Some(&hv(&sized(MAX_CLAIMS_BYTES + 1)))).is_err());
        assert_eq!(MAX_CLAIMS_BYTES, 512, "the refusal message names 512 bytes");
        // Escaped control characters stay escaped in the compact form.
        assert_eq!(
            valid_claims(Some(&hv(r#"{"r":"a\r\nX: 1"}"#))).unwrap(),
            r#"{"r":"a\r\nX: 1"}"#
        );
    }

    #[test]
    fn subjects_are_bounded() {
        assert!(valid_subject(Some(&HeaderValue::from_static("user-1"))).is_ok());
        assert!(valid_subject(None).is_err());
        assert!(valid_subject(Some(&HeaderValue::from_str(&"s".repeat(300)).unwrap())).is_err());
    }
}
