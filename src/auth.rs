//! "Who is calling, and may they pass?" — bearer extraction, verification
//! with a cache of verified tokens, the revocation check, and route policy.
//! No HTTP-server types in here.

pub mod cache;
pub mod keys;
pub mod routes;
pub mod sign;
pub mod verify;

use std::sync::Arc;

use http::HeaderValue;

use crate::config::TokensConfig;
use crate::errors::ApiError;
use crate::metrics::{Metrics, TokenResult};
use crate::revocation::RevocationList;
use crate::time::unix_now_ms;
use cache::TokenCache;
use keys::TokenKey;
pub use verify::Verified;
use verify::Verifier;

/// The outcome label of `sessiongate_token_validations_total`.
pub fn validation_result(r: &Result<Arc<Verified>, ApiError>) -> TokenResult {
    match r {
        Ok(_) => TokenResult::Ok,
        Err(ApiError::MissingToken) => TokenResult::Missing,
        Err(ApiError::TokenExpired) => TokenResult::Expired,
        Err(ApiError::SessionRevoked) => TokenResult::Revoked,
        Err(ApiError::StoreUnavailable) => TokenResult::Unavailable,
        Err(_) => TokenResult::Invalid,
    }
}

pub struct Authenticator {
    verifier: Verifier,
    /// token -> verified claims; an entry never outlives its token's `exp` + leeway,
    /// and all of them together stay within a byte budget (cache.rs).
    cache: Option<TokenCache>,
    revocations: Arc<RevocationList>,
    leeway: i64,
    metrics: Arc<Metrics>,
}

impl Authenticator {
    pub fn new(
        tokens: &TokensConfig,
        keys: &[Arc<TokenKey>],
        revocations: Arc<RevocationList>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let leeway = tokens.leeway.as_secs() as i64;
        let cache = cache::build(tokens.verified_cache_entries, leeway);
        Authenticator {
            verifier: Verifier::new(tokens, keys),
            cache,
            revocations,
            leeway,
            metrics,
        }
    }

    /// Verifies the bearer token in `authorization` (if any) and checks revocation.
    /// `Ok(None)`: no bearer token was sent.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Option<Arc<Verified>>, ApiError> {
        let Some(credentials) = authorization.and_then(bearer_credentials) else {
            if authorization.is_some_and(is_bearer_scheme) {
                let r = Err(malformed());
                self.count(&r);
                return r.map(Some);
            }
            return Ok(None);
        };
        let r = self.check(credentials);
        self.count(&r);
        r.map(Some)
    }

    /// Like [`Self::authenticate`], but no token is an error (counted as `missing`).
    pub fn require(&self, authorization: Option<&HeaderValue>) -> Result<Arc<Verified>, ApiError> {
        match self.authenticate(authorization)? {
            Some(v) => Ok(v),
            None => {
                let r = Err(ApiError::MissingToken);
                self.count(&r);
                r
            }
        }
    }

    fn count(&self, r: &Result<Arc<Verified>, ApiError>) {
        self.metrics.token_validation(validation_result(r));
    }

    /// `credentials`: the bytes after `Bearer `, not yet known to be a token.
    fn check(&self, credentials: &[u8]) -> Result<Arc<Verified>, ApiError> {
        // One clock read for the whole check: it runs on every request.
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        // The cache holds only tokens that verified, keyed by their exact
        // bytes: a hit is a token already checked to be token68 and text,
        // so the scan below runs on misses only.
        let verified = match self.cache.as_ref().and_then(|c| c.get(credentials)) {
            // The cache drops entries at expiry, but a read may race the clock.
            Some(v) if v.exp + self.leeway >= now => v,
            Some(_) => return Err(ApiError::TokenExpired),
            None => {
                let token = token68(credentials).ok_or_else(malformed)?;
                let v = Arc::new(self.verifier.verify(token, now)?);
                if let Some(c) = &self.cache {
                    c.insert(credentials.into(), v.clone());
                }
                v
            }
        };
        if self.revocations.is_revoked_key(&verified.sid_key, now) {
            return Err(ApiError::SessionRevoked);
        }
        // A shared store's revocations may not have reached us: fail closed.
        if self.revocations.check_fresh(now_ms).is_err() {
            return Err(ApiError::StoreUnavailable);
        }
        Ok(verified)
    }
}

fn is_bearer_scheme(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    b.len() >= 6 && b[..6].eq_ignore_ascii_case(b"bearer") && (b.len() == 6 || b[6] == b' ')
}

fn malformed() -> ApiError {
    ApiError::InvalidToken("the Bearer credentials are empty or malformed")
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
/// Other schemes (Basic, ...) are not ours: they count as "no token".
pub fn bearer_token(v: &HeaderValue) -> Option<&str> {
    token68(bearer_credentials(v)?)
}

/// What follows `Bearer ` (scheme case-insensitive), spaces around it
/// trimmed; not yet checked to be a token. `None` for other schemes and
/// for no credentials.
fn bearer_credentials(v: &HeaderValue) -> Option<&[u8]> {
    let b = v.as_bytes();
    let space = b.iter().position(|&c| c == b' ')?;
    if !b[..space].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = &b[space + 1..];
    let start = rest.iter().position(|&c| c != b' ')?;
    let end = rest.iter().rposition(|&c| c != b' ')? + 1;
    Some(&rest[start..end])
}

/// `credentials` as text if it is a token68. No early exit: the whole token
/// is checked in one branch-free pass that the compiler turns into vector
/// compares.
fn token68(credentials: &[u8]) -> Option<&str> {
    if !credentials.iter().fold(true, |ok, &c| ok & is_token68(c)) {
        return None;
    }
    std::str::from_utf8(credentials).ok()
}

/// A byte of a token68 (RFC 9110 11.2): a letter, a digit or one of `-._~+/=`.
/// Comparisons, not a table, so that a scan of many bytes vectorizes.
fn is_token68(c: u8) -> bool {
    let letter = (c | 0x20).wrapping_sub(b'a') < 26;
    let digit = c.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (c == b'-')
        | (c == b'.')
        | (c == b'_')
        | (c == b'~')
        | (c == b'+')
        | (c == b'/')
        | (c == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_not_tokens() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer_token(&hv("Bearer abc.def.ghi")), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&hv("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&hv("BEARER  abc ")), Some("abc"));
        assert_eq!(bearer_token(&hv("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_token(&hv("Bearer")), None);
        assert_eq!(bearer_token(&hv("Bearer a b")), None);
        assert!(is_bearer_scheme(&hv("Bearer")));
        assert!(!is_bearer_scheme(&hv("Bearerx y")));
        assert_eq!(bearer_token(&hv("Bearer   ")), None);
    }

    /// The table-driven scan accepts exactly what the definition does: the
    /// value is text, the token is token68 once spaces around it are gone.
    #[test]
    fn bearer_token_matches_its_definition_for_every_byte() {
        fn reference(v: &HeaderValue) -> Option<&str> {
            let (scheme, rest) = v.to_str().ok()?.split_once(' ')?;
            let token = rest.trim_matches(' ');
            let token68 = |c: u8| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
            };
            (scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && token.bytes().all(token68))
            .then_some(token)
        }
        for byte in 0..=255u8 {
            for shape in [
                &b"Bearer a_c"[..],
                b"Bearer _",
                b"Bearer _bc ",
                b"Be_rer abc",
                b"Bearer_ abc",
            ] {
                let value: Vec<u8> = shape
                    .iter()
                    .map(|&c| if c == b'_' { byte } else { c })
                    .collect();
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    assert_eq!(bearer_token(&v), reference(&v), "{value:?}");
                }
            }
        }
    }
}
