//! Header rules: which client headers never reach the upstream, and the
//! request id. Names are compared case-insensitively with `_` equal to `-`.

use http::HeaderValue;

pub use crate::names::same_name;

/// Headers some frameworks read as "the method is really this one".
pub const METHOD_OVERRIDE: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers some servers (IIS, Symfony, Zend, Traefik-style forward auth) read
/// as "the path is really this one". The path sessiongate decided on is the
/// only path the upstream may see, so these never pass, whoever sent them.
pub const REROUTING: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
];

/// Client-address and scheme claims an upstream might believe. Kept only from
/// a trusted proxy; from anyone else they are removed (sessiongate sets its
/// own X-Forwarded-For/-Proto/-Host).
pub const FORWARDING_CLAIMS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-url-scheme",
];

/// Header names compared as [`same_name`] does, looked up by length first:
/// every request's headers are checked against these, and a name of a
/// length no entry has costs one bounds check.
pub struct NameSet {
    by_len: Vec<Vec<Box<[u8]>>>,
}

impl NameSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> NameSet {
        let mut by_len: Vec<Vec<Box<[u8]>>> = Vec::new();
        for name in names {
            if by_len.len() <= name.len() {
                by_len.resize_with(name.len() + 1, Vec::new);
            }
            by_len[name.len()].push(name.into());
        }
        NameSet { by_len }
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.by_len
            .get(name.len())
            .is_some_and(|same_len| same_len.iter().any(|n| same_name(name, n)))
    }
}

/// The values of `?_method=` in a query string (percent-decoded), as Rails,
/// Laravel and method-override middleware read it.
pub fn query_method_overrides(query: &str) -> Vec<Vec<u8>> {
    // `_method`, however it is encoded, has a `_` or a `%`: most queries
    // have neither, and cost one scan.
    if !query.bytes().any(|b| b == b'_' || b == b'%') {
        return Vec::new();
    }
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == b"_method").then(|| percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A client's X-Request-Id is kept if it is 1-128 chars of `[A-Za-z0-9._-]`.
pub fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A new request id: 32 hex characters, unique per process and hard to guess.
///
/// Each thread draws 16 random bytes once; an id is that seed with a
/// per-thread counter mixed in (splitmix64). Request ids are correlation
/// handles, not secrets: this avoids a DRBG call per request.
pub fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static SEED: (u64, u64) = {
            let mut b = [0u8; 16];
            aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
            let (hi, lo) = b.split_at(8);
            (
                u64::from_le_bytes(hi.try_into().unwrap_or_default()),
                u64::from_le_bytes(lo.try_into().unwrap_or_default()),
            )
        };
        static COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    let n = COUNTER.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    let (hi, lo) = SEED.with(|s| *s);
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(hi.wrapping_add(n));
    let b = mix(lo ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in a
        .to_be_bytes()
        .iter()
        .chain(b.to_be_bytes().iter())
        .enumerate()
    {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&out).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_set_matches_as_same_name_does() {
        let set = NameSet::new(REROUTING.iter().map(|n| n.as_bytes()));
        for name in REROUTING {
            assert!(set.contains(name.as_bytes()));
            assert!(set.contains(name.to_ascii_uppercase().replace('-', "_").as_bytes()));
        }
        for other in [
            "x-original-ur",
            "x-original-urls",
            "x-original+url",
            "",
            "host",
        ] {
            assert!(!set.contains(other.as_bytes()), "{other}");
        }
        assert!(!NameSet::new([]).contains(b"x-original-url"));
    }

    #[test]
    fn names_match_across_case_and_underscores() {
        assert!(same_name(b"x-auth-user-id", b"X_AUTH_USER_ID"));
        assert!(same_name(b"X-Auth_User-Id", b"x-auth-user-id"));
        assert!(!same_name(b"x-auth-user-id", b"x-auth-user-idx"));
        assert!(!same_name(b"x-auth-user", b"x-auth-usex"));
    }

    #[test]
    fn query_method_overrides_are_found_in_any_encoding() {
        assert_eq!(
            query_method_overrides("a=1&_method=DELETE"),
            [b"DELETE".to_vec()]
        );
        assert_eq!(query_method_overrides("%5Fmethod=put"), [b"put".to_vec()]);
        assert_eq!(query_method_overrides("_method"), [Vec::<u8>::new()]);
        assert!(query_method_overrides("method=x&a_method=y").is_empty());
        assert!(query_method_overrides("method=DELETE&a=1").is_empty());
        assert_eq!(query_method_overrides("%5f%6Dethod=x"), [b"x".to_vec()]);
    }

    #[test]
    fn request_ids_are_checked() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("req-1.2_3") && ok(&"a".repeat(128)));
        assert!(!ok("") && !ok(&"a".repeat(129)) && !ok("has space") && !ok("a/b") && !ok("a:b"));
        assert!(acceptable_request_id(&new_request_id()));
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000, "request ids repeat");
    }
}
