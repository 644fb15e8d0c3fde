//! Header rules: which client headers never reach the upstream, and the
//! request id. Names are compared case-insensitively with `_` equal to `-`.

use http::header::HeaderName;
use http::HeaderValue;

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
pub fn is_reserved(name: &HeaderName) -> bool {
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

/// A client's X-Request-Id is kept if it is 1-128 chars of `[A-Za-z0-9._-]`.
pub fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A new request id: 32 hex characters of randomness.
pub fn new_request_id() -> HeaderValue {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    HeaderValue::from_str(&hex::encode(b)).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_across_case_and_underscores() {
        assert!(same_name(b"x-auth-user-id", b"X_AUTH_USER_ID"));
        assert!(same_name(b"X-Auth_User-Id", b"x-auth-user-id"));
        assert!(!same_name(b"x-auth-user-id", b"x-auth-user-idx"));
        assert!(!same_name(b"x-auth-user", b"x-auth-usex"));
    }

    #[test]
    fn request_ids_are_checked() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("req-1.2_3") && ok(&"a".repeat(128)));
        assert!(!ok("") && !ok(&"a".repeat(129)) && !ok("has space") && !ok("a/b") && !ok("a:b"));
        assert!(acceptable_request_id(&new_request_id()));
    }
}
