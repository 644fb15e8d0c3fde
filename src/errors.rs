//! Every error a client can see, and the one place that turns it into an HTTP
//! answer: status, `{"error", "message"}` body and, for 401, RFC 6750's
//! `WWW-Authenticate`.

use std::borrow::Cow;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    MissingToken,
    InvalidToken(&'static str),
    TokenExpired,
    SessionRevoked,
    SessionExpired,
    InvalidRequest(Cow<'static, str>),
    InvalidRefreshToken,
    RefreshTokenReused,
    NotFound,
    BadRequest(&'static str),
    Forbidden(&'static str),
    PayloadTooLarge,
    HeadersTooLarge,
    RateLimited {
        retry_after_secs: u64,
    },
    StoreUnavailable,
    UpstreamUnavailable(Cow<'static, str>),
    UpstreamTimeout,
    /// A 500: the client sees only "internal"; the cause is logged once,
    /// where the error becomes an answer.
    Internal(Internal),
}

/// What failed inside sessiongate, and the error under it.
#[derive(Clone, Debug)]
pub struct Internal {
    what: Cow<'static, str>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Internal {
    pub fn new(what: impl Into<Cow<'static, str>>) -> Internal {
        Internal {
            what: what.into(),
            cause: None,
        }
    }

    pub fn because(
        what: impl Into<Cow<'static, str>>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Internal {
        Internal {
            what: what.into(),
            cause: Some(Arc::from(cause.into())),
        }
    }
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Two internal errors are alike when they say the same thing.
impl PartialEq for Internal {
    fn eq(&self, other: &Internal) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Internal {}

impl ApiError {
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            MissingToken | InvalidToken(_) | TokenExpired | SessionRevoked | SessionExpired
            | InvalidRefreshToken | RefreshTokenReused => 401,
            InvalidRequest(_) | BadRequest(_) => 400,
            Forbidden(_) => 403,
            NotFound => 404,
            PayloadTooLarge => 413,
            HeadersTooLarge => 431,
            RateLimited { .. } => 429,
            StoreUnavailable => 503,
            UpstreamUnavailable(_) => 502,
            UpstreamTimeout => 504,
            Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingToken => "missing_token",
            InvalidToken(_) => "invalid_token",
            TokenExpired => "token_expired",
            SessionRevoked => "session_revoked",
            SessionExpired => "session_expired",
            InvalidRequest(_) | Forbidden(_) => "invalid_request",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            NotFound => "not_found",
            BadRequest(_) => "bad_request",
            PayloadTooLarge => "payload_too_large",
            HeadersTooLarge => "headers_too_large",
            RateLimited { .. } => "rate_limited",
            StoreUnavailable => "store_unavailable",
            UpstreamUnavailable(_) => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> Cow<'static, str> {
        use ApiError::*;
        match self {
            MissingToken => "This request needs an access token: send `Authorization: Bearer <token>`.".into(),
            InvalidToken(why) => format!("The access token was refused: {why}.").into(),
            TokenExpired => "The access token has expired. Refresh it and try again.".into(),
            SessionRevoked => "This session has been signed out. Please sign in again.".into(),
            SessionExpired => "Your session has expired. Please sign in again.".into(),
            InvalidRequest(why) => why.clone(),
            InvalidRefreshToken => "The refresh token is not valid. Please sign in again.".into(),
            RefreshTokenReused => "This refresh token was already used, so the session has been signed out for safety. Please sign in again.".into(),
            NotFound => "No such resource.".into(),
            BadRequest(why) => format!("The request was rejected: {why}.").into(),
            Forbidden(why) => format!("The request was refused: {why}.").into(),
            PayloadTooLarge => "The request body is too large.".into(),
            HeadersTooLarge => "The request headers are too large or too many.".into(),
            RateLimited { .. } => "Too many requests. Please wait a moment and try again.".into(),
            StoreUnavailable => "The session store is unavailable. Please try again shortly.".into(),
            UpstreamUnavailable(why) => why.clone(),
            UpstreamTimeout => "The upstream service did not answer in time.".into(),
            Internal(_) => "Something went wrong on our side.".into(),
        }
    }

    /// `WWW-Authenticate` for a 401 (RFC 6750 section 3): no `error` when no token was sent.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            ApiError::MissingToken => Some(r#"Bearer realm="sessiongate""#.to_owned()),
            e if e.status() == 401 => Some(format!(
                r#"Bearer realm="sessiongate", error="invalid_token", error_description="{}""#,
                e.code()
            )),
            _ => None,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": self.code(),
            "message": self.message(),
        }))
        .expect("error JSON serializes")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.status())
    }
}

impl ApiError {
    /// A 500 for `what`, which failed with `cause`.
    pub fn internal(
        what: impl Into<Cow<'static, str>>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ApiError {
        ApiError::Internal(Internal::because(what, cause))
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Internal(Internal {
                cause: Some(cause), ..
            }) => Some(cause.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_challenge_has_no_error_attribute() {
        let h = ApiError::MissingToken.www_authenticate().unwrap();
        assert_eq!(h, r#"Bearer realm="sessiongate""#);
    }

    #[test]
    fn a_refused_token_challenge_names_the_error() {
        let h = ApiError::TokenExpired.www_authenticate().unwrap();
        assert!(h.contains(r#"error="invalid_token""#) && h.contains("error_description="));
        assert!(ApiError::NotFound.www_authenticate().is_none());
    }

    #[test]
    fn bodies_are_json_with_code_and_message() {
        let v: serde_json::Value = serde_json::from_slice(
            &ApiError::RateLimited {
                retry_after_secs: 3,
            }
            .body(),
        )
        .unwrap();
        assert_eq!(v["error"], "rate_limited");
        assert!(v["message"].as_str().unwrap().len() > 10);
    }

    /// Proves the cause of a 500 stays with the error (for the log line) and
    /// never reaches the client's body.
    #[test]
    fn an_internal_error_keeps_its_cause_out_of_the_body() {
        let cause = std::io::Error::other("disk on fire");
        let e = ApiError::internal("writing the page", cause);
        let ApiError::Internal(why) = &e else {
            panic!("not internal")
        };
        assert_eq!(why.to_string(), "writing the page: disk on fire");
        assert!(std::error::Error::source(&e).is_some());
        let body = String::from_utf8(e.body()).unwrap();
        assert!(
            !body.contains("disk") && body.contains("internal"),
            "{body}"
        );
    }
}
