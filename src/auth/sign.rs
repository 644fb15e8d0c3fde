//! Access tokens (SPEC 3): signed with the first configured key, with the
//! issuer, audience and lifetime that verification checks.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::keys::{TokenKey, MAX_SIGNATURE};
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
    jti: &'a str,
    ext: &'a RawValue,
}

pub struct Signer {
    key: Arc<TokenKey>,
    /// The base64url JOSE header (`alg`, `kid`, `typ`): the same for every token.
    header: String,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl Signer {
    /// Signs with `keys[0]`; the config guarantees there is one.
    pub fn new(tokens: &TokensConfig, keys: &[Arc<TokenKey>]) -> Signer {
        let key = keys[0].clone();
        let header = json!({"alg": key.alg.name(), "kid": key.kid, "typ": "JWT"});
        Signer {
            header: B64.encode(header.to_string()),
            key,
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
    ///
    /// The JWS is assembled here rather than by `jsonwebtoken::encode`, which
    /// parses the private key again for every token; verification stays
    /// with `jsonwebtoken` (`auth::verify`).
    pub fn sign(&self, sub: &str, sid: &str, claims_json: &str) -> Result<String, ApiError> {
        let iat = unix_now();
        let empty: &RawValue = serde_json::from_str("{}").expect("`{}` is JSON");
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub,
            sid,
            iat,
            exp: iat + self.ttl_secs,
            jti: &random_b64::<16>(),
            ext: serde_json::from_str(claims_json).unwrap_or(empty),
        };
        let failed = |e: String| {
            ApiError::internal(
                format!("signing an access token with kid {}", self.key.kid),
                e,
            )
        };
        let claims = serde_json::to_vec(&claims).map_err(|e| failed(e.to_string()))?;
        let mut signature = [0u8; MAX_SIGNATURE];
        let b64_len = |n: usize| n.div_ceil(3) * 4;
        let mut token = String::with_capacity(
            self.header.len() + b64_len(claims.len()) + b64_len(self.key.signature_len()) + 2,
        );
        token.push_str(&self.header);
        token.push('.');
        B64.encode_string(&claims, &mut token);
        let len = self
            .key
            .sign(token.as_bytes(), &mut signature)
            .map_err(failed)?;
        token.push('.');
        B64.encode_string(&signature[..len], &mut token);
        Ok(token)
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

    fn tokens() -> TokensConfig {
        TokensConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            access_ttl: Duration::from_secs(60),
            leeway: Duration::from_secs(0),
            keys: Vec::new(),
            verified_cache_entries: 0,
        }
    }

    /// Proves what the signer writes is what the verifier (`jsonwebtoken`)
    /// accepts, for every algorithm: issuer, audience, kid and the login's
    /// claims survive the round trip, and the header says what it must.
    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256, Alg::HS256] {
            let material = generate(alg).unwrap();
            let key = match alg {
                Alg::HS256 => TokenKey::from_secret("k1", material.as_bytes()),
                _ => TokenKey::from_pem("k1", alg, material.as_bytes()),
            };
            let keys = [Arc::new(key.unwrap())];
            let tokens = tokens();
            let signer = Signer::new(&tokens, &keys);
            let token = signer
                .sign("alice", "sid-1", r#"{"role":"admin"}"#)
                .unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg.jwt());
            assert_eq!(header.kid.as_deref(), Some("k1"));
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let v = Verifier::new(&tokens, &keys)
                .verify(&token, unix_now())
                .unwrap_or_else(|e| panic!("{}: {e:?}", alg.name()));
            assert_eq!((v.sub.as_str(), v.sid.as_str()), ("alice", "sid-1"));
            assert_eq!(v.claims_header.to_str().unwrap(), r#"{"role":"admin"}"#);
            assert_eq!(v.exp - v.iat, 60);
            let elsewhere = TokensConfig {
                audience: "another".into(),
                ..tokens.clone()
            };
            let refused = Verifier::new(&elsewhere, &keys).verify(&token, unix_now());
            assert!(refused.is_err(), "the audience is checked");
            let at = token.rfind('.').unwrap() + 3;
            let other = if &token[at..=at] == "A" { "B" } else { "A" };
            let mut forged = token.clone();
            forged.replace_range(at..=at, other);
            let forged = Verifier::new(&tokens, &keys).verify(&forged, unix_now());
            assert!(forged.is_err(), "the signature is checked");
        }
    }

    /// Stored claims that are not JSON (a hand-edited store) become `{}`
    /// rather than a token that no verifier parses.
    #[test]
    fn claims_that_are_not_json_are_signed_as_an_empty_object() {
        let pem = generate(Alg::EdDSA).unwrap();
        let keys = [Arc::new(
            TokenKey::from_pem("k1", Alg::EdDSA, pem.as_bytes()).unwrap(),
        )];
        let tokens = tokens();
        let token = Signer::new(&tokens, &keys)
            .sign("alice", "sid-1", r#"{"role":"#)
            .unwrap();
        let v = Verifier::new(&tokens, &keys)
            .verify(&token, unix_now())
            .unwrap();
        assert_eq!(v.claims_header.to_str().unwrap(), "{}");
    }
}
