//! Access-token verification (SPEC 3): every hostile token is a 401 and
//! nothing reaches the upstream; the JWKS and key rotation.

mod common;

use common::jwt::{self, b64, EdKey};
use common::*;

/// A running sidecar, its upstream, its signing key, and a valid session's
/// header and claims to derive hostile tokens from.
struct Fixture {
    up: Upstream,
    sc: Sidecar,
    key: EdKey,
    header: Value,
    claims: Value,
}

impl Fixture {
    fn new(overrides: Value) -> Fixture {
        let up = Upstream::start();
        let sc = Sidecar::start(&up, overrides);
        let key = EdKey::from_pem(&sc.cfg.key_pem());
        let tok = sc.login("alice");
        let (header, claims) = jwt::decode(&s(&tok, "access_token"));
        Fixture {
            up,
            sc,
            key,
            header,
            claims,
        }
    }

    /// The session's claims with `changes` applied (`null` removes a claim).
    fn claims_with(&self, changes: Value) -> Value {
        let mut c = self.claims.clone();
        common::yaml::deep_merge(&mut c, changes);
        c
    }

    fn header_with(&self, changes: Value) -> Value {
        let mut h = self.header.clone();
        common::yaml::deep_merge(&mut h, changes);
        h
    }

    /// Sends `token` to a path of its own and asserts a 401 `code` that
    /// never reached the upstream.
    fn assert_refused(&self, what: &str, token: &str, code: &str) {
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = format!("/api/hostile/{slug}");
        let r = self
            .sc
            .send(Request::get(&path).header("Authorization", &format!("Bearer {token}")));
        assert_eq!(r.status, 401, "{what}: {}", r.describe());
        assert_error(&r, 401, code);
        assert!(
            self.up.requests_to(&path).is_empty(),
            "{what}: the request reached the upstream"
        );
    }

    fn assert_accepted(&self, what: &str, token: &str) {
        let r = self.sc.get(PRIVATE, Some(token));
        assert_eq!(r.status, 200, "{what}: {}", r.describe());
    }
}

#[test]
fn a_hand_signed_token_with_the_sessions_claims_is_accepted() {
    // The control for every test below: our own signing is right.
    let f = Fixture::new(json!({}));
    let t = f
        .key
        .sign(&f.header, &f.claims_with(json!({"jti": "control"})));
    f.assert_accepted("control", &t);
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new(json!({}));
    for alg in ["none", "None", "NONE"] {
        let h = f.header_with(json!({"alg": alg}));
        let t = format!("{}.", jwt::signing_input(&h, &f.claims));
        f.assert_refused(&format!("alg {alg}"), &t, "invalid_token");
        let t = f.key.sign(&h, &f.claims);
        f.assert_refused(&format!("alg {alg} signed"), &t, "invalid_token");
    }
}

#[test]
fn a_header_alg_that_differs_from_the_keys_alg_is_refused() {
    let f = Fixture::new(json!({}));
    for alg in ["ES256", "RS256", "HS256", "EdDSA25519"] {
        let t = f.key.sign(&f.header_with(json!({"alg": alg})), &f.claims);
        f.assert_refused(&format!("alg {alg}"), &t, "invalid_token");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let f = Fixture::new(json!({}));
    let h = f.header_with(json!({"alg": "HS256"}));
    let raw_public = f.key.public();
    let jwks = f.sc.get("/.well-known/jwks.json", None).text();
    for (what, secret) in [
        ("raw public key", raw_public.clone()),
        ("jwks text", jwks.into_bytes()),
        ("x", b64(&raw_public).into_bytes()),
    ] {
        let t = jwt::hs256(&secret, &h, &f.claims);
        f.assert_refused(&format!("hs256 {what}"), &t, "invalid_token");
    }
}

#[test]
fn an_unknown_kid_is_refused() {
    let f = Fixture::new(json!({}));
    let t = f.key.sign(&f.header_with(json!({"kid": "k9"})), &f.claims);
    f.assert_refused("unknown kid", &t, "invalid_token");
    let mut h = f.header.clone();
    h.as_object_mut().unwrap().remove("kid");
    f.assert_refused("no kid", &f.key.sign(&h, &f.claims), "invalid_token");
}

#[test]
fn a_path_like_kid_is_refused() {
    let f = Fixture::new(json!({}));
    for kid in ["../../etc/passwd", "/dev/null", "k1/../k1", "k1\u{0}"] {
        let t = f.key.sign(&f.header_with(json!({"kid": kid})), &f.claims);
        f.assert_refused(&format!("kid {kid}"), &t, "invalid_token");
    }
}

#[test]
fn a_wrong_signature_is_refused() {
    let f = Fixture::new(json!({}));
    let good = f.key.sign(&f.header, &f.claims);
    let (si, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = jwt::b64_decode(sig);
    bytes[0] ^= 1;
    f.assert_refused(
        "flipped signature",
        &format!("{si}.{}", b64(&bytes)),
        "invalid_token",
    );
    // A signature of other claims, pasted on.
    let other = f
        .key
        .sign(&f.header, &f.claims_with(json!({"sub": "user-bob"})));
    let (_, other_sig) = other.rsplit_once('.').unwrap();
    let forged = jwt::signing_input(&f.header, &f.claims_with(json!({"sub": "user-mallory"})));
    f.assert_refused(
        "pasted signature",
        &format!("{forged}.{other_sig}"),
        "invalid_token",
    );
    // Signed by a different Ed25519 key under the same kid.
    let stranger = EdKey::from_pem(&keygen("EdDSA", "k1"));
    f.assert_refused(
        "foreign key",
        &stranger.sign(&f.header, &f.claims),
        "invalid_token",
    );
}

#[test]
fn a_token_expired_beyond_the_leeway_is_token_expired() {
    let f = Fixture::new(json!({}));
    let now = jwt::now();
    let t = f.key.sign(
        &f.header,
        &f.claims_with(json!({"iat": now - 1000, "exp": now - 120})),
    );
    f.assert_refused("expired", &t, "token_expired");
}

#[test]
fn a_token_expired_within_the_leeway_is_accepted() {
    let f = Fixture::new(json!({}));
    let now = jwt::now();
    let t = f.key.sign(
        &f.header,
        &f.claims_with(json!({"iat": now - 600, "exp": now - 10})),
    );
    f.assert_accepted("expired 10 s ago, leeway 30 s", &t);
}

#[test]
fn claims_of_the_wrong_json_type_are_refused() {
    let f = Fixture::new(json!({}));
    let now = jwt::now();
    let cases = [
        ("exp string", json!({"exp": (now + 600).to_string()})),
        ("iat string", json!({"iat": now.to_string()})),
        ("sub number", json!({"sub": 42})),
        ("sid number", json!({"sid": 42})),
        ("exp float string", json!({"exp": "1e12"})),
    ];
    for (what, changes) in cases {
        let t = f.key.sign(&f.header, &f.claims_with(changes));
        f.assert_refused(what, &t, "invalid_token");
    }
}

#[test]
fn a_token_missing_a_required_claim_is_refused() {
    let f = Fixture::new(json!({}));
    for claim in ["sid", "sub", "exp", "iat", "iss", "aud"] {
        let t = f
            .key
            .sign(&f.header, &f.claims_with(json!({ claim: null })));
        f.assert_refused(&format!("missing {claim}"), &t, "invalid_token");
    }
}

#[test]
fn a_wrong_audience_or_issuer_is_refused() {
    let f = Fixture::new(json!({}));
    for (what, changes) in [
        ("aud", json!({"aud": "someone-else"})),
        ("aud list", json!({"aud": ["someone-else"]})),
        ("iss", json!({"iss": "evil-issuer"})),
    ] {
        let t = f.key.sign(&f.header, &f.claims_with(changes));
        f.assert_refused(what, &t, "invalid_token");
    }
}

#[test]
fn an_iat_in_the_future_beyond_the_leeway_is_refused() {
    let f = Fixture::new(json!({}));
    let now = jwt::now();
    let t = f.key.sign(
        &f.header,
        &f.claims_with(json!({"iat": now + 300, "exp": now + 1200})),
    );
    f.assert_refused("future iat", &t, "invalid_token");
    let t = f
        .key
        .sign(&f.header, &f.claims_with(json!({"nbf": now + 300})));
    f.assert_refused("future nbf", &t, "invalid_token");
}

#[test]
fn a_crit_header_makes_a_token_invalid() {
    let f = Fixture::new(json!({}));
    let t = f
        .key
        .sign(&f.header_with(json!({"crit": ["exp"]})), &f.claims);
    f.assert_refused("crit", &t, "invalid_token");
}

#[test]
fn jku_and_jwk_headers_do_not_bring_in_keys() {
    let f = Fixture::new(json!({}));
    let stranger = EdKey::from_pem(&keygen("EdDSA", "evil"));
    let h = f.header_with(json!({
        "kid": "evil",
        "jku": "http://127.0.0.1:1/jwks.json",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64(&stranger.public())},
    }));
    f.assert_refused(
        "embedded jwk",
        &stranger.sign(&h, &f.claims),
        "invalid_token",
    );
}

#[test]
fn malformed_base64url_is_refused() {
    let f = Fixture::new(json!({}));
    let good = f.key.sign(&f.header, &f.claims);
    let parts: Vec<&str> = good.split('.').collect();
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    let std_alphabet = format!("{}.{}+/.{}", parts[0], parts[1], parts[2]);
    let one_char = format!("e.{}.{}", parts[1], parts[2]);
    let not_json = format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]);
    for (what, t) in [
        ("padded", padded),
        ("std alphabet", std_alphabet),
        ("one char", one_char),
        ("not json", not_json),
    ] {
        f.assert_refused(what, &t, "invalid_token");
    }
}

#[test]
fn a_token_with_two_or_four_segments_is_refused() {
    let f = Fixture::new(json!({}));
    let good = f.key.sign(&f.header, &f.claims);
    let (si, sig) = good.rsplit_once('.').unwrap();
    f.assert_refused("two segments", si, "invalid_token");
    f.assert_refused(
        "four segments",
        &format!("{si}.{sig}.{sig}"),
        "invalid_token",
    );
    f.assert_refused("one segment", "abcdef", "invalid_token");
}

#[test]
fn a_20_kb_token_is_refused() {
    // Large heads allowed, so that the token check itself is what refuses.
    let f = Fixture::new(json!({"server": {"max_header_bytes": 65536}}));
    let t = f.key.sign(
        &f.header,
        &f.claims_with(json!({"pad": "x".repeat(20 * 1024)})),
    );
    assert!(t.len() > 20 * 1024);
    f.assert_refused("huge token", &t, "invalid_token");
}

#[test]
fn the_jwks_serves_the_eddsa_public_key_without_private_parts() {
    let f = Fixture::new(json!({}));
    let r = f.sc.get("/.well-known/jwks.json", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    // Public keys may be cached; one consistent Cache-Control.
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=300"));
    let jwks = r.json();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let k = &keys[0];
    assert_eq!(k["kid"], "k1");
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["crv"], "Ed25519");
    assert!(
        k.get("d").is_none(),
        "private key material in the JWKS: {k}"
    );
    assert_eq!(jwt::b64_decode(k["x"].as_str().unwrap()), f.key.public());
    let tok = s(&f.sc.login("bob"), "access_token");
    assert!(
        jwt::verify_with_jwk(&tok, k),
        "an issued token does not verify with the JWKS key"
    );
}

#[test]
fn an_hs256_secret_is_never_published_in_the_jwks() {
    let up = Upstream::start();
    let secret = "hs256-secret-for-the-tests-0123456789abcdef";
    let sc = Sidecar::start(
        &up,
        json!({"tokens": {"keys": [{"kid": "h1", "alg": "HS256", "secret": secret}]}}),
    );
    let r = sc.get("/.well-known/jwks.json", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["keys"], json!([]), "{}", r.text());
    assert!(!r.text().contains(secret));
    // And the secret's own bytes are the HMAC key.
    let tok = sc.login("alice");
    let (h, c) = jwt::decode(&s(&tok, "access_token"));
    let minted = jwt::hs256(
        secret.as_bytes(),
        &h,
        &json!(c.as_object().unwrap().clone()),
    );
    assert_eq!(sc.get(PRIVATE, Some(&minted)).status, 200);
}

#[test]
fn with_rotated_keys_the_first_signs_and_every_key_verifies() {
    let up = Upstream::start();
    let mut cfg = SidecarConfig::new(&up.url(), json!({}));
    let k2 = cfg.write_file("k2.pem", &keygen("ES256", "k2"));
    let k1 = EdKey::from_pem(&cfg.key_pem());
    let old_entry = cfg.config["tokens"]["keys"][0].clone();
    cfg.config["tokens"]["keys"] =
        json!([{"kid": "k2", "alg": "ES256", "private_key_file": k2}, old_entry]);
    let sc = cfg.spawn();

    let tok = sc.login("alice");
    let at = s(&tok, "access_token");
    let (header, claims) = jwt::decode(&at);
    assert_eq!(header["kid"], "k2");
    assert_eq!(header["alg"], "ES256");
    let jwks = sc.get("/.well-known/jwks.json", None).json();
    let by_kid = |kid: &str| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .cloned()
            .unwrap_or_else(|| panic!("{kid} not in {jwks}"))
    };
    assert_eq!(by_kid("k2")["kty"], "EC");
    assert_eq!(by_kid("k1")["kty"], "OKP");
    assert!(jwt::verify_with_jwk(&at, &by_kid("k2")));

    let by_old = k1.sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}), &claims);
    let r = sc.get(PRIVATE, Some(&by_old));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(echoed(&r.json(), "X-Auth-User-Id"), ["user-alice"]);
    // The old key's kid with the new key's algorithm is still refused.
    let mixed = k1.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}), &claims);
    assert_error(&sc.get(PRIVATE, Some(&mixed)), 401, "invalid_token");
}
