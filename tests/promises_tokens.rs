//! Promises of token checking that no other test held the binary to: a
//! cached token reaching its expiry, a revoked one up to its expiry,
//! `verified_cache_entries: 0`, and an RS256 key in the JWKS (never an
//! HS256 one).

mod common;

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use common::*;

/// Polls `PRIVATE` with `access` (bounded) until it stops being accepted;
/// the first refusal.
fn first_refusal(sc: &Sidecar, access: &str, limit: Duration) -> Response {
    let deadline = Instant::now() + limit;
    loop {
        let r = sc.get(PRIVATE, Some(access));
        if r.status != 200 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the token was still accepted {limit:?} after login"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sidecar whose access tokens live 2 s, with 1 s of leeway.
fn short_lived(cache_entries: u64) -> (Upstream, Sidecar) {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"tokens": {"access_ttl": "2s", "leeway": "1s",
                          "verified_cache_entries": cache_entries}}),
    );
    (up, sc)
}

/// Revokes `tok`'s session from `other`, another session of the same user.
fn revoke_from(sc: &Sidecar, tok: &Value, other: &Value) {
    let r = sc.send(
        Request::new(
            "DELETE",
            &format!("/v1/auth/sessions/{}", s(tok, "session_id")),
        )
        .bearer(&s(other, "access_token")),
    );
    assert_eq!(r.status, 204, "{}", r.describe());
}

/// A token response's access token and its `exp`.
fn access_and_exp(tok: &Value) -> (String, i64) {
    let access = s(tok, "access_token");
    let exp = jwt::decode(&access).1["exp"].as_i64().expect("exp");
    (access, exp)
}

/// A token that was verified (and, with the cache on, cached) while valid is
/// refused as `token_expired` once `exp + leeway` has passed.
fn expired_token_is_refused(cache_entries: u64) {
    let (_up, sc) = short_lived(cache_entries);
    let tok = sc.login("alice");
    let (access, exp) = access_and_exp(&tok);
    assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200, "fresh token");
    let r = first_refusal(&sc, &access, Duration::from_secs(30));
    assert_error(&r, 401, "token_expired");
    let now = jwt::now();
    assert!(
        now > exp + 1,
        "refused at {now}, before exp {exp} + leeway 1s: {}",
        r.describe()
    );
    // And it stays refused: the cache never brings it back.
    assert_error(&sc.get(PRIVATE, Some(&access)), 401, "token_expired");
    assert!(
        sc.metric(
            "sessiongate_token_validations_total",
            &[("result", "expired")]
        ) >= 2.0
    );
    // A fresh token of the same session still works (the session lives on).
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&r.json(), "access_token"))).status,
        200
    );
}

#[test]
fn a_cached_token_reaching_its_expiry_is_token_expired() {
    expired_token_is_refused(100_000);
}

#[test]
fn with_the_cache_off_an_expired_token_is_token_expired() {
    expired_token_is_refused(0);
}

/// A revoked session's token is refused as `session_revoked` on every
/// request until it is refused as `token_expired`: never accepted in
/// between (the list once forgot the session one second early, in the last
/// second `exp + leeway` in which the token is still accepted).
fn a_revoked_token_is_never_accepted_again(cache_entries: u64) {
    let (_up, sc) = short_lived(cache_entries);
    let tok = sc.login("alice");
    let other = sc.login("alice");
    let (access, exp) = access_and_exp(&tok);
    assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200, "fresh token");
    revoke_from(&sc, &tok, &other);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut revoked = 0;
    loop {
        let r = sc.get(PRIVATE, Some(&access));
        let body = r.json();
        match body["error"].as_str() {
            Some("session_revoked") => revoked += 1,
            Some("token_expired") => break,
            _ => panic!("{} s after exp {exp}: {}", jwt::now() - exp, r.describe()),
        }
        assert!(Instant::now() < deadline, "never refused as expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(jwt::now() > exp + 1, "expired before exp + leeway");
    assert!(revoked >= 2, "{revoked} requests saw the revocation");
}

#[test]
fn a_revoked_cached_token_is_never_accepted_again_before_it_expires() {
    a_revoked_token_is_never_accepted_again(100_000);
}

#[test]
fn a_revoked_uncached_token_is_never_accepted_again_before_it_expires() {
    a_revoked_token_is_never_accepted_again(0);
}

#[test]
fn with_the_cache_off_tokens_verify_every_time_and_revocation_is_immediate() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"tokens": {"verified_cache_entries": 0}}));
    let tok = sc.login("alice");
    let other = sc.login("alice");
    let access = s(&tok, "access_token");
    for _ in 0..5 {
        assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200);
    }
    assert_eq!(
        sc.metric("sessiongate_token_validations_total", &[("result", "ok")]),
        5.0
    );
    // Revoked from another session of the user: refused on the next request.
    revoke_from(&sc, &tok, &other);
    assert_error(&sc.get(PRIVATE, Some(&access)), 401, "session_revoked");
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&other, "access_token"))).status,
        200
    );
    // A tampered copy of a token that was just accepted is still refused.
    let good = s(&other, "access_token");
    let (head, _) = good.rsplit_once('.').unwrap();
    let tampered = format!("{head}.{}", jwt::b64(&[7u8; 64]));
    assert_error(&sc.get(PRIVATE, Some(&tampered)), 401, "invalid_token");
}

/// Checks an RS256 compact JWS against an RSA JWK (`n`, `e`).
fn verify_rs256(token: &str, jwk: &Value) -> bool {
    let (signed, sig) = token.rsplit_once('.').expect("a JWS");
    let key = RsaPublicKeyComponents {
        n: jwt::b64_decode(jwk["n"].as_str().unwrap_or_default()),
        e: jwt::b64_decode(jwk["e"].as_str().unwrap_or_default()),
    };
    key.verify(
        &RSA_PKCS1_2048_8192_SHA256,
        signed.as_bytes(),
        &jwt::b64_decode(sig),
    )
    .is_ok()
}

#[test]
fn the_jwks_serves_an_rs256_key_that_verifies_issued_tokens_and_no_hs256_key() {
    let up = Upstream::start();
    let mut cfg = SidecarConfig::new(&up.url(), json!({}));
    let rsa = cfg.write_file("r1.pem", &keygen("RS256", "r1"));
    let secret = "an-hs256-verification-secret-0123456789";
    cfg.config["tokens"]["keys"] = json!([
        {"kid": "r1", "alg": "RS256", "private_key_file": rsa},
        {"kid": "h1", "alg": "HS256", "secret": secret},
    ]);
    let sc = cfg.spawn();
    let r = sc.get("/.well-known/jwks.json", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(!r.text().contains(secret), "the HS256 secret is published");
    let keys = r.json()["keys"].as_array().cloned().expect("keys");
    assert_eq!(keys.len(), 1, "only the RS256 key is public: {keys:?}");
    let k = &keys[0];
    assert_eq!(
        (&k["kid"], &k["kty"], &k["alg"], &k["use"]),
        (&json!("r1"), &json!("RSA"), &json!("RS256"), &json!("sig"))
    );
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(k.get(private).is_none(), "private part {private}: {k}");
    }
    let n = jwt::b64_decode(k["n"].as_str().expect("n"));
    assert!(
        n.len() >= 256 && n[0] != 0,
        "n is not a minimal 2048+ bit modulus"
    );
    assert_eq!(jwt::b64_decode(k["e"].as_str().expect("e")), [1, 0, 1]);

    let access = s(&sc.login("alice"), "access_token");
    let (header, _) = jwt::decode(&access);
    assert_eq!(
        (&header["alg"], &header["kid"]),
        (&json!("RS256"), &json!("r1"))
    );
    assert!(
        verify_rs256(&access, k),
        "an issued token does not verify with the JWKS key"
    );
    let mut tampered = access.clone();
    tampered.insert(access.find('.').unwrap() + 2, 'x');
    assert!(
        !verify_rs256(&tampered, k),
        "the check itself accepts anything"
    );
    assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200);
}
