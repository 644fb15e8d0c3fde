//! The per-request pieces besides token verification (see benches/verify.rs):
//! path normalization, route matching, the revocation lookup, identity-header
//! name comparison, the bearer-token scan, and the header rewrites of a
//! proxied request and of its response.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use sessiongate::auth::bearer_token;
use sessiongate::auth::routes::RouteTable;
use sessiongate::auth::Verified;
use sessiongate::config::default_routes;
use sessiongate::config::IdentityHeadersConfig;
use sessiongate::proxy::client::ClientInfo;
use sessiongate::proxy::headers::same_name;
use sessiongate::proxy::path::normalize;
use sessiongate::proxy::rewrite::{strip_response, Decided, Rewrite};
use sessiongate::revocation::RevocationList;
use sessiongate::sessions::refresh_token::new_session_id;
use sessiongate::time::unix_now;

// The allocator of the shipped binary (src/main.rs): the rewrites allocate.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A browser's GET as it reaches the rewrite: keep-alive named in
/// `Connection` near the top, cookies, the bearer token.
fn browser_request() -> http::request::Parts {
    let token = format!("Bearer {}", "eyJhbGciOiJFZERTQSJ9.".repeat(12));
    let (parts, ()) = Request::get("/api/v1/orders/12345")
        .header("Host", "api.example.com")
        .header("Connection", "keep-alive")
        .header(
            "sec-ch-ua",
            "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        )
        .header("Accept", "application/json, text/plain, */*")
        .header("Authorization", token)
        .header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        )
        .header("Origin", "https://app.example.com")
        .header("Referer", "https://app.example.com/orders")
        .header("Accept-Encoding", "gzip, deflate, br, zstd")
        .header("Accept-Language", "en-GB,en;q=0.9")
        // The refresh cookie is scoped to /v1/auth: not sent here.
        .header("Cookie", "theme=dark; _ga=GA1.1.1")
        .body(())
        .expect("a valid request")
        .into_parts();
    parts
}

/// What nginx answers: `Connection: keep-alive` last.
fn nginx_response() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("server", "nginx/1.22.1"),
        ("date", "Wed, 02 Dec 2026 06:00:00 GMT"),
        ("content-type", "application/json"),
        ("content-length", "2"),
        ("connection", "keep-alive"),
    ] {
        h.append(n, HeaderValue::from_static(v));
    }
    h
}

fn bench_headers(c: &mut Criterion) {
    let value = HeaderValue::from_str(&format!("Bearer {}", "eyJhbGciOiJFZERTQSJ9.".repeat(12)))
        .expect("a valid value");
    c.bench_function("auth/bearer_token_250_bytes", |b| {
        b.iter(|| bearer_token(std::hint::black_box(&value)).expect("a token"))
    });
    let rewrite = Rewrite::new(
        IdentityHeadersConfig {
            user_id: HeaderName::from_static("x-auth-user-id"),
            session_id: HeaderName::from_static("x-auth-session-id"),
            claims: HeaderName::from_static("x-auth-claims"),
        },
        false,
        Some("sg_refresh".into()),
    );
    let verified = Verified {
        sub: "user-1".into(),
        sid: "c2Vzc2lvbi0x".into(),
        iat: 0,
        exp: i64::MAX,
        user_header: HeaderValue::from_static("user-1"),
        session_header: HeaderValue::from_static("c2Vzc2lvbi0x"),
        claims_header: HeaderValue::from_static("{\"role\":\"user\"}"),
        sid_key: sessiongate::revocation::session_key("c2Vzc2lvbi0x"),
    };
    let client = ClientInfo::new(
        "203.0.113.7".parse().expect("an IP"),
        &HeaderMap::new(),
        &[],
    );
    let peer = HeaderValue::from_static("203.0.113.7");
    let request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let authority = HeaderValue::from_static("127.0.0.1:8080");
    let decided = Decided {
        client: &client,
        peer: &peer,
        identity: Some(&verified),
        request_id: &request_id,
        upgrade: false,
        upstream_authority: &authority,
    };
    let request = browser_request();
    c.bench_function("rewrite/browser_request", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |parts| {
                rewrite
                    .apply(parts, None, &[], &decided)
                    .expect("rewritten")
            },
            BatchSize::SmallInput,
        )
    });
    let response = nginx_response();
    c.bench_function("rewrite/nginx_response", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| strip_response(h, false),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    targets = bench, bench_headers
}
criterion_main!(benches);
