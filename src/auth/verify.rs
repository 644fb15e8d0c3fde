//! Access-token verification, cheap checks first: size and shape, header,
//! key by `kid`, algorithm from the key, signature, then typed claims.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::Deserialize;

use super::keys::TokenKey;
use crate::config::TokensConfig;
use crate::errors::ApiError;
use crate::revocation::{session_key, SessionKey};

/// A token larger than this is refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8192;
const MAX_HEADER_SEGMENT: usize = 1024;

/// What a verified token says, with the identity header values ready to send.
#[derive(Debug)]
pub struct Verified {
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub user_header: HeaderValue,
    pub session_header: HeaderValue,
    pub claims_header: HeaderValue,
    /// `sid` as the revocation list knows it, made once per token.
    pub sid_key: SessionKey,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[allow(dead_code)]
    iss: String,
    #[allow(dead_code)]
    aud: Audience,
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
    #[allow(dead_code)]
    nbf: Option<i64>,
    #[serde(default)]
    ext: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct Verifier {
    keys: HashMap<String, (Arc<TokenKey>, Validation)>,
    leeway: i64,
}

impl Verifier {
    /// Verifies with every key of `keys`, by `kid`.
    pub fn new(tokens: &TokensConfig, keys: &[Arc<TokenKey>]) -> Verifier {
        let keys = keys
            .iter()
            .map(|k| {
                let mut v = Validation::new(k.alg.jwt());
                v.set_issuer(&[&tokens.issuer]);
                v.set_audience(&[&tokens.audience]);
                v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
                v.leeway = tokens.leeway.as_secs();
                v.validate_nbf = true;
                v.validate_exp = true;
                (k.kid.clone(), (k.clone(), v))
            })
            .collect();
        Verifier {
            keys,
            leeway: tokens.leeway.as_secs() as i64,
        }
    }

    /// Full verification of `token` at unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::InvalidToken("the token is too large"));
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::InvalidToken("the token is not a signed JWT"));
        };
        if h.len() > MAX_HEADER_SEGMENT {
            return Err(ApiError::InvalidToken("the token header is too large"));
        }
        let header_json = B64
            .decode(h)
            .map_err(|_| ApiError::InvalidToken("the token header is not base64url"))?;
        let header: JoseHeader = serde_json::from_slice(&header_json)
            .map_err(|_| ApiError::InvalidToken("the token header is not valid"))?;
        if header.crit.is_some() {
            return Err(ApiError::InvalidToken(
                "the token has critical header parameters",
            ));
        }
        let kid = header
            .kid
            .ok_or(ApiError::InvalidToken("the token names no key (kid)"))?;
        let (key, validation) = self.keys.get(&kid).ok_or(ApiError::InvalidToken(
            "the token was signed by an unknown key",
        ))?;
        if header.alg != key.alg.name() {
            return Err(ApiError::InvalidToken(
                "the token's algorithm does not match its key",
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                ErrorKind::ImmatureSignature => {
                    ApiError::InvalidToken("the token is not valid yet")
                }
                ErrorKind::InvalidSignature => {
                    ApiError::InvalidToken("the signature does not verify")
                }
                ErrorKind::InvalidIssuer => ApiError::InvalidToken("wrong issuer"),
                ErrorKind::InvalidAudience => ApiError::InvalidToken("wrong audience"),
                ErrorKind::MissingRequiredClaim(_) => {
                    ApiError::InvalidToken("a required claim is missing")
                }
                _ => ApiError::InvalidToken("the token's claims are not valid"),
            },
        )?;
        let c = data.claims;
        if c.iat > now + self.leeway {
            return Err(ApiError::InvalidToken("the token was issued in the future"));
        }
        if c.sub.is_empty() || c.sid.is_empty() {
            return Err(ApiError::InvalidToken(
                "the token has an empty subject or session",
            ));
        }
        let claims_json = match &c.ext {
            Some(ext) => serde_json::to_string(ext).unwrap_or_else(|_| "{}".into()),
            None => "{}".to_owned(),
        };
        let header_value = |s: &str| {
            HeaderValue::from_bytes(s.as_bytes())
                .map_err(|_| ApiError::InvalidToken("the token's claims cannot be forwarded"))
        };
        Ok(Verified {
            user_header: header_value(&c.sub)?,
            session_header: header_value(&c.sid)?,
            claims_header: header_value(&claims_json)?,
            sid_key: session_key(&c.sid),
            sub: c.sub,
            sid: c.sid,
            iat: c.iat,
            exp: c.exp,
        })
    }
}
