//! Access tokens (SPEC 3): signed with the first configured key, with the
//! issuer, audience and lifetime that verification checks.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Serialize;

use super::keys::TokenKey;
use crate::config::TokensConfig;
use crate::errors::ApiError;
use crate::time::unix_now;

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    sid: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    ext: serde_json::Value,
}

pub struct Signer {
    key: Arc<TokenKey>,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl Signer {
    /// Signs with `keys[0]`; the config guarantees there is one.
    pub fn new(tokens: &TokensConfig, keys: &[Arc<TokenKey>]) -> Signer {
        Signer {
            key: keys[0].clone(),
            issuer: tokens.issuer.clone(),
            audience: tokens.audience.clone(),
            ttl_secs: tokens.access_ttl.as_secs() as i64,
        }
    }

    /// How long a new access token lives (`expires_in`).
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// An access token of session `sid` for `sub`, carrying `claims_json`
    /// (the login's extra claims, a JSON object) as `ext`.
    pub fn sign(&self, sub: &str, sid: &str, claims_json: &str) -> Result<String, ApiError> {
        let key = &self.key;
        let iat = unix_now();
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub,
            sid,
            iat,
            exp: iat + self.ttl_secs,
            jti: random_b64::<16>(),
            ext: serde_json::from_str(claims_json).unwrap_or_else(|_| serde_json::json!({})),
        };
        let mut header = jsonwebtoken::Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| {
            ApiError::internal(format!("signing an access token with kid {}", key.kid), e)
        })
    }
}

/// `N` random bytes, base64url: token ids, session ids.
pub fn random_b64<const N: usize>() -> String {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    B64.encode(b)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::keys::{generate, Alg};
    use crate::auth::verify::Verifier;

    /// Proves what the signer writes is what the verifier accepts: issuer,
    /// audience, kid and the login's claims survive the round trip.
    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let pem = generate(Alg::EdDSA).unwrap();
        let keys = [Arc::new(
            TokenKey::from_pem("k1", Alg::EdDSA, pem.as_bytes()).unwrap(),
        )];
        let tokens = TokensConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            access_ttl: Duration::from_secs(60),
            leeway: Duration::from_secs(0),
            keys: Vec::new(),
            verified_cache_entries: 0,
        };
        let token = Signer::new(&tokens, &keys)
            .sign("alice", "sid-1", r#"{"role":"admin"}"#)
            .unwrap();
        let v = Verifier::new(&tokens, &keys)
            .verify(&token, unix_now())
            .unwrap();
        assert_eq!((v.sub.as_str(), v.sid.as_str()), ("alice", "sid-1"));
        assert!(v.claims_header.to_str().unwrap().contains("admin"));
        let elsewhere = TokensConfig {
            audience: "another".into(),
            ..tokens
        };
        let refused = Verifier::new(&elsewhere, &keys).verify(&token, unix_now());
        assert!(refused.is_err(), "the audience is checked");
    }
}
