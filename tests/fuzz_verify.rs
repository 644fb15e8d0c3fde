//! Property harness for access-token verification: `Verifier::verify` never
//! panics, and answers `Ok` only for a token an independent reading of SPEC 3
//! accepts. Replays `fuzz/corpus/verify/` first (hostile tokens, one per
//! line), then `FUZZ_CASES` random headers/claims signed with the real keys,
//! mutations of a valid token, and arbitrary strings. Each property also runs
//! through `Authenticator` with its cache of verified tokens on, as
//! production does: a cache hit must decide exactly as a fresh verification.

mod fuzz_support;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use sessiongate::auth::keys::{generate, Alg, TokenKey, MAX_SIGNATURE};
use sessiongate::auth::verify::{Verified, Verifier};
use sessiongate::auth::Authenticator;
use sessiongate::config::TokensConfig;
use sessiongate::errors::ApiError;
use sessiongate::metrics::Metrics;
use sessiongate::revocation::RevocationList;

const LEEWAY: i64 = 30;

struct Keys {
    ed: Arc<TokenKey>,
    hs: Arc<TokenKey>,
    verifier: Verifier,
    /// The production path: verification behind the verified-token cache.
    cached: Authenticator,
    revocations: Arc<RevocationList>,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = generate(Alg::EdDSA).expect("an Ed25519 key");
        let ed = Arc::new(TokenKey::from_pem("k1", Alg::EdDSA, pem.as_bytes()).expect("PEM"));
        let hs = Arc::new(TokenKey::from_secret("k2", &[7u8; 32]).expect("secret"));
        let mut tokens = TokensConfig {
            issuer: "sessiongate".into(),
            audience: "upstream".into(),
            access_ttl: Duration::from_secs(900),
            leeway: Duration::from_secs(LEEWAY as u64),
            keys: Vec::new(),
            verified_cache_entries: 0,
        };
        let keys = [ed.clone(), hs.clone()];
        let verifier = Verifier::new(&tokens, &keys);
        tokens.verified_cache_entries = 10_000;
        let revocations = Arc::new(RevocationList::new(1000, Duration::from_secs(900)));
        let cached = Authenticator::new(
            &tokens,
            &keys,
            revocations.clone(),
            Arc::new(Metrics::new()),
        );
        Keys {
            verifier,
            cached,
            revocations,
            ed,
            hs,
        }
    })
}

/// `token` through the cached production path (`Authorization: Bearer`);
/// `None` when it cannot be a header value at all (the client can't send it).
fn cached(token: &str) -> Option<Result<Arc<Verified>, ApiError>> {
    let hv = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    Some(match keys().cached.authenticate(Some(&hv)) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ApiError::MissingToken),
        Err(e) => Err(e),
    })
}

/// Asserts that the cached path refuses `token` twice (a refusal is never cached as a pass).
fn cached_refuses(token: &str) -> Result<(), TestCaseError> {
    for round in 0..2 {
        if let Some(r) = cached(token) {
            prop_assert!(
                r.is_err(),
                "round {}: the cached path accepted {:?}",
                round,
                token
            );
        }
    }
    Ok(())
}

fn now() -> i64 {
    sessiongate::time::unix_now()
}

/// `header.claims.signature`, signed with the key the header's `kid` names
/// (k1 otherwise) by that key's algorithm, whatever the header's `alg` says.
fn sign(header: &Value, claims: &Value) -> String {
    let k = keys();
    let key = if header["kid"] == "k2" { &k.hs } else { &k.ed };
    let enc = |v: &Value| B64.encode(serde_json::to_vec(v).expect("JSON"));
    let input = format!("{}.{}", enc(header), enc(claims));
    let mut sig = [0u8; MAX_SIGNATURE];
    let len = key.sign(input.as_bytes(), &mut sig).expect("sign");
    format!("{input}.{}", B64.encode(&sig[..len]))
}

fn valid_claims() -> Value {
    let t = now();
    json!({"iss": "sessiongate", "aud": "upstream", "sub": "alice", "sid": "s1",
           "iat": t, "exp": t + 600, "jti": "j", "ext": {"role": "admin"}})
}

fn valid_token() -> String {
    sign(
        &json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
        &valid_claims(),
    )
}

/// SPEC 3, read independently of the implementation.
fn spec_accepts(header: &Value, claims: &Value, t: i64) -> bool {
    let alg_ok = match header["kid"].as_str() {
        Some("k1") => header["alg"] == "EdDSA",
        Some("k2") => header["alg"] == "HS256",
        _ => false,
    };
    let int = |k: &str| claims.get(k).and_then(Value::as_i64);
    let nonempty = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b >= 0x20 && b != 0x7f))
    };
    let aud_ok = match &claims["aud"] {
        Value::String(s) => s == "upstream",
        Value::Array(a) => a.iter().all(Value::is_string) && a.iter().any(|v| v == "upstream"),
        _ => false,
    };
    alg_ok
        && header.get("crit").is_none()
        && claims["iss"] == "sessiongate"
        && aud_ok
        && nonempty("sub")
        && nonempty("sid")
        && int("exp").is_some_and(|e| e >= t - LEEWAY)
        && int("iat").is_some_and(|i| i <= t + LEEWAY)
        && match claims.get("nbf") {
            None => true,
            Some(v) => v.as_i64().is_some_and(|n| n <= t + LEEWAY),
        }
        && matches!(
            claims.get("ext"),
            None | Some(Value::Null | Value::Object(_))
        )
}

#[test]
fn the_seed_corpus_is_refused_and_a_fresh_valid_token_accepted() {
    let k = keys();
    for line in fuzz_support::corpus_lines("verify") {
        assert!(
            k.verifier.verify(&line, now()).is_err(),
            "corpus token accepted: {line}"
        );
    }
    assert!(k.verifier.verify(&valid_token(), now()).is_ok());
    for line in fuzz_support::corpus_lines("verify") {
        if let Some(r) = cached(&line) {
            assert!(
                r.is_err(),
                "corpus token accepted by the cached path: {line}"
            );
        }
    }
}

/// Each one-character change of a cached valid token, at every position
/// (the signature's last characters included), misses the cache and is refused.
#[test]
fn every_one_character_change_of_a_cached_token_is_refused() {
    let original = valid_token();
    assert!(cached(&original).expect("a header value").is_ok());
    for i in 0..original.len() {
        let mut b = original.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(b).expect("ASCII");
        assert!(
            keys().verifier.verify(&changed, now()).is_err(),
            "position {i}: {changed}"
        );
        let r = cached(&changed).expect("a header value");
        assert!(
            r.is_err(),
            "position {i}: the cached path accepted {changed}"
        );
    }
}

/// Both kinds of session id: one sessiongate issues (22 base64url
/// characters, used as the list's key) and any other (hashed into it).
#[test]
fn a_cached_token_of_a_revoked_session_is_refused() {
    for sid in ["revoked-later", "cmV2b2tlZC1sYXRlci0xMg"] {
        let mut claims = valid_claims();
        claims["sid"] = json!(sid);
        let token = sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}), &claims);
        let first = cached(&token).expect("a header value");
        assert_eq!(first.expect("accepted").sid, sid);
        keys().revocations.insert(sid, now());
        let again = cached(&token).expect("a header value");
        assert!(
            matches!(again, Err(ApiError::SessionRevoked)),
            "a cache hit skipped the revocation check for {sid}: {:?}",
            again.map(|v| v.sid.clone())
        );
    }
}

/// `values[0]` (the well-formed choice) three times in four, else any of
/// `values` or the claim left out: enough valid tokens to test acceptance.
fn one_of(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    let n = values.len();
    (0u8..4, 0..=n).prop_map(move |(w, i)| {
        if w < 3 {
            Some(values[0].clone())
        } else {
            values.get(i).cloned()
        }
    })
}

/// `value` about one time in seven.
fn rarely(value: Value) -> impl Strategy<Value = Option<Value>> {
    (0u8..7).prop_map(move |w| (w == 0).then(|| value.clone()))
}

fn claims_strategy() -> impl Strategy<Value = Value> {
    let t = now();
    (
        one_of(vec![
            json!("sessiongate"),
            json!("evil"),
            json!(1),
            Value::Null,
        ]),
        one_of(vec![
            json!("upstream"),
            json!(["x", "upstream"]),
            json!(["x"]),
            json!("x"),
            json!(7),
        ]),
        one_of(vec![
            json!("alice"),
            json!(""),
            json!(5),
            json!("a\r\nb"),
            json!("ü"),
        ]),
        one_of(vec![json!("s1"), json!(""), json!(["s"]), json!("s\n")]),
        one_of(vec![
            json!(t),
            json!(t + 20),
            json!(t + 600),
            json!("x"),
            json!(t - 100),
        ]),
        one_of(vec![
            json!(t + 600),
            json!(t - 20),
            json!(t - 600),
            json!("9999999999"),
            json!(1e30),
        ]),
        one_of(vec![
            json!(t - 10),
            json!(t + 20),
            json!(t + 600),
            json!("x"),
        ]),
        one_of(vec![
            json!({"role": "a"}),
            json!({}),
            json!("x"),
            json!([]),
            Value::Null,
        ]),
    )
        .prop_map(|(iss, aud, sub, sid, iat, exp, nbf, ext)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
                ("sid", sid),
                ("iat", iat),
                ("exp", exp),
                ("nbf", nbf),
                ("ext", ext),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
}

fn header_strategy() -> impl Strategy<Value = Value> {
    (
        one_of(vec![
            json!("EdDSA"),
            json!("HS256"),
            json!("none"),
            json!("eddsa"),
            json!("RS256"),
        ]),
        one_of(vec![
            json!("k1"),
            json!("k2"),
            json!("k3"),
            json!(1),
            json!("../k1"),
        ]),
        rarely(json!(["exp"])),
        rarely(json!("https://evil.example/jwks")),
    )
        .prop_map(|(alg, kid, crit, jku)| {
            let mut m = serde_json::Map::new();
            m.insert("typ".into(), json!("JWT"));
            for (k, v) in [("alg", alg), ("kid", kid), ("crit", crit), ("jku", jku)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn signed_tokens_are_accepted_exactly_when_the_spec_says(
        header in header_strategy(),
        claims in claims_strategy(),
    ) {
        let token = sign(&header, &claims);
        let t = now();
        let got = keys().verifier.verify(&token, t);
        let want = spec_accepts(&header, &claims, t);
        prop_assert_eq!(got.is_ok(), want, "header {} claims {} -> {:?}", header, claims, got.err());
        if let Ok(v) = got {
            prop_assert_eq!(Some(v.sub.as_str()), claims["sub"].as_str());
            prop_assert_eq!(Some(v.sid.as_str()), claims["sid"].as_str());
        }
        // The cached path: a miss, then a hit, both decide as the spec does.
        for round in 0..2 {
            let got = cached(&token).expect("a JWT is a header value");
            prop_assert_eq!(got.is_ok(), want, "round {}: header {} claims {}", round, header, claims);
            if let Ok(v) = got {
                prop_assert_eq!(Some(v.sub.as_str()), claims["sub"].as_str());
                prop_assert_eq!(Some(v.sid.as_str()), claims["sid"].as_str());
            }
        }
    }

    #[test]
    fn a_mutated_valid_token_is_accepted_only_when_unchanged(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let original = valid_token();
        let mut b = original.clone().into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(b.len() + 1);
            match op {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i, byte),
                _ if i < b.len() => { b.remove(i); }
                _ => {}
            }
        }
        let Ok(mutated) = String::from_utf8(b) else { return Ok(()) };
        let got = keys().verifier.verify(&mutated, now());
        prop_assert!(got.is_err() || mutated == original, "mutated token accepted: {}", mutated);
        // With the original in the cache, a near miss must not hit it.
        prop_assert!(cached(&original).expect("a header value").is_ok());
        // Spaces around the token are optional whitespace in HTTP (RFC 9110
        // 5.5, and `1*SP` after the scheme): "Bearer  tok " *is* the token.
        if mutated.trim_matches(' ') != original {
            cached_refuses(&mutated)?;
        } else {
            prop_assert!(cached(&mutated).expect("a header value").is_ok());
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_and_are_refused(s in any::<String>()) {
        prop_assert!(keys().verifier.verify(&s, now()).is_err());
        cached_refuses(&s)?;
    }

    #[test]
    fn three_arbitrary_segments_are_refused(
        h in "[A-Za-z0-9_=-]{0,60}", c in "[A-Za-z0-9_-]{0,60}", sig in "[A-Za-z0-9_-]{0,90}",
    ) {
        let token = format!("{h}.{c}.{sig}");
        prop_assert!(keys().verifier.verify(&token, now()).is_err());
        cached_refuses(&token)?;
    }
}
