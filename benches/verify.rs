//! Access-token verification cost per algorithm, uncached (signature every
//! time) and through the verified-token cache (what a client re-sending its
//! token pays), revocation check included.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use sessiongate::auth::keys::{generate, Alg, TokenKey};
use sessiongate::auth::verify::Verifier;
use sessiongate::auth::Authenticator;
use sessiongate::config::TokensConfig;
use sessiongate::metrics::Metrics;
use sessiongate::revocation::RevocationList;
use sessiongate::time::unix_now;

fn key(alg: Alg) -> Arc<TokenKey> {
    let material = generate(alg).expect("keygen");
    Arc::new(match alg {
        Alg::HS256 => TokenKey::from_secret("k1", material.as_bytes()).expect("key"),
        _ => TokenKey::from_pem("k1", alg, material.as_bytes()).expect("key"),
    })
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

fn token(k: &TokenKey) -> String {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": "sessiongate", "aud": "upstream", "sub": "user-alice", "sid": "c2Vzc2lvbi1pZC0xMjM0NQ",
        "iat": now, "exp": now + 900, "jti": "bench", "ext": {"role": "admin"}
    });
    let mut header = jsonwebtoken::Header::new(k.alg.jwt());
    header.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&header, &claims, &k.encoding).expect("sign")
}

fn bench(c: &mut Criterion) {
    for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256, Alg::HS256] {
        let k = key(alg);
        let cfg = tokens();
        let keys = [k.clone()];
        let t = token(&k);
        let verifier = Verifier::new(&cfg, &keys);
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
