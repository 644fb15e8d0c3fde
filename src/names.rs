//! Names more than one layer needs, in a leaf module so that the config
//! can check against them without importing the layers that use them: the
//! JWKS path, the headers an operator may not take for identity headers, and
//! the security event kinds (SPEC 8), the signing algorithms of a token key.

use http::HeaderName;
use jsonwebtoken::Algorithm;

/// Where the JWKS is served (SPEC 4.7); no route may claim it.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Same header name for SPEC 6 purposes: case-insensitive, `_` == `-`.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let norm = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(*x) == norm(*y)
        })
}

/// Headers an operator may not choose as identity headers.
pub fn is_reserved_header(name: &HeaderName) -> bool {
    const RESERVED: &[&str] = &[
        "authorization",
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ];
    RESERVED
        .iter()
        .any(|r| same_name(r.as_bytes(), name.as_str().as_bytes()))
}

/// The security event kinds: a closed set.
pub mod event {
    pub const REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";
    pub const NEW_IP: &str = "new_ip";
    pub const NEW_DEVICE: &str = "new_device";
    pub const SESSION_REVOKED: &str = "session_revoked";
    pub const REVOKE_ALL: &str = "revoke_all";
    pub const LOGIN: &str = "login";
    pub const UPSTREAM_REVOKE: &str = "upstream_revoke";

    pub const KINDS: &[&str] = &[
        REFRESH_TOKEN_REUSE,
        NEW_IP,
        NEW_DEVICE,
        SESSION_REVOKED,
        REVOKE_ALL,
        LOGIN,
        UPSTREAM_REVOKE,
    ];

    /// The static name of stored kind text; `"unknown"` for text that is none.
    pub fn kind_of(s: &str) -> &'static str {
        KINDS.iter().copied().find(|k| *k == s).unwrap_or("unknown")
    }
}

/// The algorithm of a token key (`tokens.keys[].alg`): fixed by the config,
/// never taken from a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

impl Alg {
    pub fn from_name(s: &str) -> Option<Alg> {
        match s {
            "EdDSA" => Some(Alg::EdDSA),
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            "HS256" => Some(Alg::HS256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::HS256 => "HS256",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Alg::EdDSA => Algorithm::EdDSA,
            Alg::ES256 => Algorithm::ES256,
            Alg::RS256 => Algorithm::RS256,
            Alg::HS256 => Algorithm::HS256,
        }
    }
}
