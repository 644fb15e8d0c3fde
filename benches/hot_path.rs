//! The per-request pieces besides token verification (see benches/verify.rs):
//! path normalization, route matching, the revocation lookup, identity-header
//! name comparison.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use sessiongate::auth::routes::RouteTable;
use sessiongate::config::default_routes;
use sessiongate::proxy::headers::same_name;
use sessiongate::proxy::path::normalize;
use sessiongate::revocation::RevocationList;
use sessiongate::sessions::refresh_token::new_session_id;
use sessiongate::time::unix_now;

fn bench(c: &mut Criterion) {
    c.bench_function("normalize/plain", |b| {
        b.iter(|| normalize(std::hint::black_box("/api/v1/orders/12345/items")).expect("ok"))
    });
    c.bench_function("normalize/dots_and_escapes", |b| {
        b.iter(|| normalize(std::hint::black_box("/api//v1/./orders/../items/%61bc")).expect("ok"))
    });
    let routes = RouteTable::new(default_routes());
    c.bench_function("routes/policy", |b| {
        b.iter(|| routes.policy(&Method::GET, std::hint::black_box("/api/v1/orders/12345")))
    });
    let list = RevocationList::new(1_000_000, Duration::from_secs(930));
    let now = unix_now();
    for _ in 0..100_000 {
        list.insert(&new_session_id(), now);
    }
    let revoked = new_session_id();
    list.insert(&revoked, now);
    let live = new_session_id();
    c.bench_function("revocation/miss_100k_entries", |b| {
        b.iter(|| list.is_revoked(std::hint::black_box(&live)))
    });
    c.bench_function("revocation/hit_100k_entries", |b| {
        b.iter(|| list.is_revoked(std::hint::black_box(&revoked)))
    });
    c.bench_function("headers/same_name", |b| {
        b.iter(|| {
            same_name(
                std::hint::black_box(b"X_Auth_User_Id"),
                std::hint::black_box(b"x-auth-user-id"),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
