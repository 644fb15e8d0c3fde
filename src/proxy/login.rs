//! Login delegation (SPEC 4.1): the upstream checks credentials as it always
//! has; a 2xx carrying the subject header becomes a session.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::api::{send_ok, set_cookie};
use super::gateway::{Gateway, RequestCtx};
use super::upstream::Upstream;
use crate::config::{Login, RefreshCookie};
use crate::errors::ApiError;
use crate::sessions::{Client, Sessions};

/// Bounds on what an upstream may put in a session.
const MAX_SUBJECT_BYTES: usize = 256;
/// Sized with the verified-token cache's byte budget (auth/cache.rs).
const MAX_CLAIMS_BYTES: usize = crate::auth::cache::MAX_CLAIMS_BYTES;
/// A failed login's answer is relayed whole; refuse absurd ones.
const MAX_RELAYED_BODY: usize = 1 << 20;

pub struct LoginForwarder {
    cfg: Login,
    upstream: Arc<Upstream>,
    connector: Connector,
}

/// The response headers that describe the connection, not the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

impl LoginForwarder {
    /// The upstream's peer carries its trust anchors (`crate::tls`).
    pub fn new(cfg: Login, upstream: Arc<Upstream>) -> Self {
        let opts = pingora::connectors::ConnectorOptions::new(1);
        LoginForwarder {
            cfg,
            upstream,
            connector: Connector::new(Some(opts)),
        }
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

    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        gw: &Gateway,
        sessions: &Sessions,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Vec<u8>,
        client: &Client,
        cookie: Option<&RefreshCookie>,
    ) -> Result<(), ApiError> {
        let mut req = session.req_header().clone();
        req.set_uri(
            self.cfg
                .upstream_path
                .parse()
                .map_err(|_| ApiError::Internal)?,
        );
        ctx.forward_target = None;
        for h in HOP_BY_HOP {
            req.remove_header(*h);
        }
        // The body was read already: the upstream has nothing to wait for.
        req.remove_header(&http::header::EXPECT);
        req.insert_header(http::header::CONTENT_LENGTH, body.len())
            .map_err(|_| ApiError::Internal)?;
        gw.rewrite_upstream_request(
            &mut req,
            ctx,
            &[&self.cfg.subject_header, &self.cfg.claims_header],
        )
        .map_err(|_| ApiError::Internal)?;
        let exchange = self.exchange(req, body);
        let (resp, resp_body) = match tokio::time::timeout(self.upstream.timeout(), exchange).await
        {
            Ok(r) => r?,
            Err(_) => return Err(ApiError::UpstreamTimeout),
        };
        let subject = resp.headers.get(&self.cfg.subject_header);
        if !resp.status.is_success() || subject.is_none() {
            return self.relay(session, ctx, resp, resp_body).await;
        }
        let subject = valid_subject(subject)?;
        let claims = valid_claims(resp.headers.get(&self.cfg.claims_header))?;
        let tokens = sessions.login(&subject, claims, client).await?;
        let body = serde_json::to_vec(&tokens).map_err(|_| ApiError::Internal)?;
        let extra = cookie
            .and_then(|c| set_cookie(c, &tokens.refresh_token))
            .map(|v| (SET_COOKIE, v))
            .into_iter()
            .collect();
        send_ok(session, ctx, 200, body, extra).await
    }

    /// One request/response with the upstream, the body read whole (bounded).
    async fn exchange(
        &self,
        req: RequestHeader,
        body: Vec<u8>,
    ) -> Result<(ResponseHeader, Vec<u8>), ApiError> {
        let unavailable =
            |_| ApiError::UpstreamUnavailable("The upstream service is unavailable.".into());
        let peer = self.upstream.peer().ok_or_else(|| unavailable(()))?;
        let (http, _reused) = self
            .connector
            .get_http_session(&*peer)
            .await
            .map_err(|_| unavailable(()))?;
        let HttpSession::H1(mut h1) = http else {
            return Err(unavailable(()));
        };
        h1.write_request_header(Box::new(req))
            .await
            .map_err(|_| unavailable(()))?;
        if !body.is_empty() {
            h1.write_body(&body).await.map_err(|_| unavailable(()))?;
        }
        h1.finish_body().await.map_err(|_| unavailable(()))?;
        // Interim answers (100 Continue, 103 Early Hints) are skipped; a 101
        // to a request that asked for no upgrade is a broken upstream.
        let resp = loop {
            h1.read_response().await.map_err(|e| match e.etype() {
                pingora::ErrorType::ReadTimedout => ApiError::UpstreamTimeout,
                _ => unavailable(()),
            })?;
            let resp = h1.resp_header().ok_or_else(|| unavailable(()))?;
            match resp.status.as_u16() {
                101 => return Err(bad_upstream("it switched protocols")),
                100..=199 => continue,
                _ => break resp.clone(),
            }
        };
        let mut out = Vec::new();
        while let Some(chunk) = h1.read_body_bytes().await.map_err(|_| unavailable(()))? {
            if out.len() + chunk.len() > MAX_RELAYED_BODY {
                return Err(ApiError::UpstreamUnavailable(
                    "The upstream's login answer is too large.".into(),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        if h1.will_keepalive() {
            self.connector
                .release_http_session(HttpSession::H1(h1), &*peer, peer.options.idle_timeout)
                .await;
        }
        Ok((resp, out))
    }

    /// The upstream's own answer, unchanged but for the subject/claims headers and framing.
    async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        resp: ResponseHeader,
        body: Vec<u8>,
    ) -> Result<(), ApiError> {
        let mut out = ResponseHeader::build(resp.status, Some(resp.headers.len() + 2))
            .map_err(|_| ApiError::Internal)?;
        for (name, value) in resp.headers.iter() {
            let name_s = name.as_str();
            if HOP_BY_HOP.contains(&name_s)
                || name == self.cfg.subject_header
                || name == self.cfg.claims_header
                || name_s == "x-request-id"
            {
                continue;
            }
            out.append_header(name.clone(), value.clone())
                .map_err(|_| ApiError::Internal)?;
        }
        out.insert_header(http::header::CONTENT_LENGTH, body.len())
            .map_err(|_| ApiError::Internal)?;
        out.insert_header(
            HeaderName::from_static("x-request-id"),
            ctx.request_id.clone(),
        )
        .map_err(|_| ApiError::Internal)?;
        let no_body = body.is_empty() || session.req_header().method == http::Method::HEAD;
        ctx.count(resp.status.as_u16());
        let send = async {
            session
                .write_response_header(Box::new(out), no_body)
                .await?;
            if !no_body {
                session
                    .write_response_body(Some(Bytes::from(body)), true)
                    .await?;
            }
            Ok::<_, Box<pingora::Error>>(())
        };
        send.await.map_err(|_| ApiError::Internal)
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
            serde_json::to_string(&m).map_err(|_| ApiError::Internal)
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
