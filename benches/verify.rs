//! Access-token verification cost per algorithm, uncached (signature every
//! time) and through the verified-token cache (what a client re-sending its
//! token pays), revocation check included; and signing (every login and
//! refresh), against `jsonwebtoken::encode` of the same claims, which
//! parses the private key per token.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use jsonwebtoken::EncodingKey;
use sessiongate::auth::keys::{generate, Alg, TokenKey};
use sessiongate::auth::sign::Signer;
use sessiongate::auth::verify::Verifier;
use sessiongate::auth::Authenticator;
use sessiongate::config::TokensConfig;
use sessiongate::metrics::Metrics;
use sessiongate::revocation::RevocationList;
use sessiongate::time::unix_now;

fn key(alg: Alg) -> (Arc<TokenKey>, EncodingKey) {
    let material = generate(alg).expect("keygen");
    let m = material.as_bytes();
    match alg {
        Alg::HS256 => (
            Arc::new(TokenKey::from_secret("k1", m).expect("key")),
            EncodingKey::from_secret(m),
        ),
        _ => {
            let encoding = match alg {
                Alg::EdDSA => EncodingKey::from_ed_pem(m),
                Alg::ES256 => EncodingKey::from_ec_pem(m),
                _ => EncodingKey::from_rsa_pem(m),
            };
            let key = TokenKey::from_pem("k1", alg, m).expect("key");
            (Arc::new(key), encoding.expect("PEM"))
        }
    }
}

fn tokens() -> TokensConfig {
    TokensConfig {
        issuer: "sessiongate".into(),
        audience: "upstream".into(),
        access_ttl: Duration::from_secs(900),
        leeway: Duration::from_secs(30),
        keys: Vec::new(),
        verified_cache_entries: 100_000,
    }
}

const SUB: &str = "user-alice";
const SID: &str = "c2Vzc2lvbi1pZC0xMjM0NQ";
const EXT: &str = r#"{"role":"admin"}"#;

/// What `jsonwebtoken::encode` makes of the claims `Signer::sign` writes.
fn encode(k: &TokenKey, encoding: &EncodingKey) -> String {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": "sessiongate", "aud": "upstream", "sub": SUB, "sid": SID,
        "iat": now, "exp": now + 900, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "ext": serde_json::from_str::<serde_json::Value>(EXT).expect("JSON"),
    });
    let mut header = jsonwebtoken::Header::new(k.alg.jwt());
    header.kid = Some(k.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, &claims, encoding).expect("sign")
}

fn bench(c: &mut Criterion) {
    for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256, Alg::HS256] {
        let (k, encoding) = key(alg);
        let cfg = tokens();
        let keys = [k.clone()];
        let signer = Signer::new(&cfg, &keys);
        let t = signer.sign(SUB, SID, EXT).expect("signed");
        c.bench_function(&format!("sign/{}", alg.name()), |b| {
            b.iter(|| {
                signer
                    .sign(SUB, std::hint::black_box(SID), EXT)
                    .expect("signed")
            })
        });
        c.bench_function(&format!("sign_jsonwebtoken_encode/{}", alg.name()), |b| {
            b.iter(|| encode(std::hint::black_box(&k), &encoding))
        });
        let verifier = Verifier::new(&cfg, &keys);
        let from_encode = encode(&k, &encoding);
        verifier.verify(&from_encode, unix_now()).expect("valid");
        c.bench_function(&format!("verify_uncached/{}", alg.name()), |b| {
            b.iter(|| {
                verifier
                    .verify(std::hint::black_box(&t), unix_now())
                    .expect("valid")
            })
        });
        let revocations = Arc::new(RevocationList::new(1_000_000, Duration::from_secs(930)));
        let auth = Authenticator::new(&cfg, &keys, revocations, Arc::new(Metrics::new()));
        let header = HeaderValue::from_str(&format!("Bearer {t}")).expect("header");
        c.bench_function(&format!("authenticate_cached/{}", alg.name()), |b| {
            b.iter(|| {
                auth.authenticate(Some(std::hint::black_box(&header)))
                    .expect("valid")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
