//! Forwarding (SPEC 6): what reaches the upstream, what never does, and the
//! answers sessiongate writes itself when it refuses or the upstream fails.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Sends `target` byte-exact (no client normalization) with `headers`.
fn raw(sc: &Sidecar, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Request::new(method, target);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    sc.send(req)
}

#[test]
fn method_path_query_and_body_are_forwarded_with_identity_headers() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let at = s(&tok, "access_token");
    let r = sc.send(
        Request::new("PUT", "/api/things?x=1&y=2")
            .bearer(&at)
            .body("hello"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/api/things");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echoed(&echo, "X-Auth-User-Id"), ["user-alice"]);
    assert_eq!(echoed(&echo, "X-Auth-Session-Id"), [s(&tok, "session_id")]);
    let claims = echoed(&echo, "X-Auth-Claims");
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&claims[0]).unwrap(),
        json!({"role": "admin"})
    );
    assert_eq!(
        echoed(&echo, "Authorization"),
        [format!("Bearer {at}")],
        "Authorization must pass unchanged"
    );
}

const SPOOFED: &[(&str, &str)] = &[
    ("X-Auth-User-Id", "evil"),
    ("x-auth-user-id", "evil-lower"),
    ("X_Auth_User_Id", "evil-underscore"),
    ("X-AUTH-SESSION-ID", "evil-sid"),
    ("x_auth_session_id", "evil-sid-2"),
    ("X-Auth-Claims", r#"{"role":"root"}"#),
    ("x_AUTH-claims", r#"{"role":"root"}"#),
];

#[test]
fn client_identity_headers_in_any_spelling_are_replaced_on_a_protected_route() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("bob");
    let mut req = Request::get(PRIVATE).bearer(&s(&tok, "access_token"));
    for (n, v) in SPOOFED {
        req = req.header(n, v);
    }
    let r = sc.send(req);
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(
        echoed(&echo, "X-Auth-User-Id"),
        ["user-bob"],
        "{}",
        echo["headers"]
    );
    assert_eq!(
        echoed(&echo, "X-Auth-Session-Id"),
        [s(&tok, "session_id")],
        "{}",
        echo["headers"]
    );
    assert_eq!(
        echoed(&echo, "X-Auth-Claims"),
        [r#"{"role":"user"}"#],
        "{}",
        echo["headers"]
    );
}

#[test]
fn client_identity_headers_in_any_spelling_are_removed_on_a_public_route() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = raw(&sc, "GET", "/public/info?a=b", SPOOFED);
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echo["path"], "/public/info");
    assert_eq!(echo["query"], "a=b");
    for h in ["X-Auth-User-Id", "X-Auth-Session-Id", "X-Auth-Claims"] {
        assert!(
            echoed(&echo, h).is_empty(),
            "{h} reached the upstream: {}",
            echo["headers"]
        );
    }
}

#[test]
fn a_connection_header_cannot_drop_the_identity_headers() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let r = sc.send(
        Request::get(PRIVATE)
            .bearer(&s(&tok, "access_token"))
            .header(
                "Connection",
                "close, X-Auth-User-Id, X-Auth-Session-Id, X-Auth-Claims",
            ),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(
        echoed(&echo, "X-Auth-User-Id"),
        ["user-alice"],
        "{}",
        echo["headers"]
    );
    assert_eq!(echoed(&echo, "X-Auth-Session-Id"), [s(&tok, "session_id")]);
    assert_eq!(echoed(&echo, "X-Auth-Claims").len(), 1);
}

#[test]
fn x_forwarded_headers_from_an_untrusted_client_are_replaced() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = raw(
        &sc,
        "GET",
        "/public/fwd",
        &[
            ("Host", "app.example.test"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echoed(&echo, "X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(echoed(&echo, "X-Forwarded-Proto"), ["http"]);
    assert_eq!(echoed(&echo, "X-Forwarded-Host"), ["app.example.test"]);
}

#[test]
fn x_forwarded_headers_from_a_trusted_proxy_are_kept_and_the_peer_appended() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"server": {"trusted_proxies": ["127.0.0.1/32"]}}),
    );
    let r = raw(
        &sc,
        "GET",
        "/public/fwd",
        &[
            ("Host", "internal:8080"),
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.test"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(
        echoed(&echo, "X-Forwarded-For"),
        ["198.51.100.7, 127.0.0.1"]
    );
    assert_eq!(echoed(&echo, "X-Forwarded-Proto"), ["https"]);
    assert_eq!(echoed(&echo, "X-Forwarded-Host"), ["app.example.test"]);
}

#[test]
fn a_well_formed_request_id_is_kept_and_returned() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = raw(&sc, "GET", "/public/rid", &[("X-Request-Id", "req-42.a_B")]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(echoed(&r.json(), "X-Request-Id"), ["req-42.a_B"]);
    assert_eq!(r.header("X-Request-Id"), Some("req-42.a_B"));
}

#[test]
fn a_malformed_request_id_is_replaced_by_a_new_one_that_is_returned() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let too_long = "a".repeat(129);
    for bad in ["has space", "a/b", "x:y", too_long.as_str()] {
        let r = raw(&sc, "GET", "/public/rid", &[("X-Request-Id", bad)]);
        assert_eq!(r.status, 200, "{}", r.describe());
        let seen = echoed(&r.json(), "X-Request-Id");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_ne!(seen[0], bad);
        assert!(!seen[0].is_empty() && seen[0].len() <= 128);
        assert_eq!(
            r.header("X-Request-Id"),
            Some(seen[0].as_str()),
            "the response carries another id"
        );
    }
}

#[test]
fn a_request_id_is_returned_on_answers_sessiongate_writes_itself() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = raw(&sc, "GET", PRIVATE, &[("X-Request-Id", "mine-1")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("X-Request-Id"), Some("mine-1"));
    let r = sc.get(PRIVATE, None);
    assert!(
        r.header("X-Request-Id").is_some_and(|v| !v.is_empty()),
        "{}",
        r.describe()
    );
}

#[test]
fn a_protected_route_without_a_token_is_401_missing_token() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = sc.get("/api/no-token", None);
    assert_error(&r, 401, "missing_token");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Bearer realm="sessiongate""#)
    );
    assert!(up.records().is_empty(), "forwarded: {:?}", up.records());
}

#[test]
fn ambiguous_paths_are_400_bad_request_and_never_forwarded() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    for target in [
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%5cb",
        "/public/%2e%2e/api/x",
        "/public/%2E/x",
        "/public/..;x/api/x",
        "/public/.;x/y",
        "/public/a\\b",
        "/public/a%00b",
    ] {
        let r = raw(&sc, "GET", target, &[]);
        assert_eq!(r.status, 400, "{target}: {}", r.describe());
        assert_eq!(r.error_code(), "bad_request", "{target}");
    }
    assert!(up.records().is_empty(), "forwarded: {:?}", up.records());
}

#[test]
fn dot_segments_are_resolved_and_the_matched_path_is_the_forwarded_one() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = raw(&sc, "GET", "/public/../api/x", &[]);
    assert_error(&r, 401, "missing_token");
    assert!(
        up.records().is_empty(),
        "a public prefix let /api/x through: {:?}",
        up.records()
    );
    let tok = sc.login("alice");
    let r = raw(
        &sc,
        "GET",
        "/public/../api/x?q=1",
        &[(
            "Authorization",
            &format!("Bearer {}", s(&tok, "access_token")),
        )],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["path"], "/api/x");
    assert_eq!(r.json()["query"], "q=1");
    let r = raw(&sc, "GET", "/public//a/./b", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["path"], "/public/a/b");
}

#[test]
fn more_than_max_headers_is_431_and_not_forwarded() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let names: Vec<(String, String)> = (0..150)
        .map(|i| (format!("X-H-{i}"), "v".to_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = raw(&sc, "GET", "/public/many", &headers);
    assert_error(&r, 431, "headers_too_large");
    let r = raw(&sc, "GET", "/public/sixty", &headers[..60]);
    assert_eq!(r.status, 200, "60 headers are allowed: {}", r.describe());
    assert!(up.requests_to("/public/many").is_empty());
}

#[test]
fn a_header_larger_than_max_header_bytes_is_431_and_not_forwarded() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let big = "a".repeat(20 * 1024);
    let r = raw(&sc, "GET", "/public/big", &[("X-Pad", &big)]);
    assert_error(&r, 431, "headers_too_large");
    assert!(up.records().is_empty());
    assert_eq!(
        sc.get("/public/after", None).status,
        200,
        "the next request is served"
    );
}

/// `server.max_header_bytes` bounds the head as the client sent it, its
/// final blank line included: exactly the limit passes, one byte more is 431.
#[test]
fn max_header_bytes_counts_the_whole_head_to_the_byte() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"server": {"max_header_bytes": 4096}}));
    let head = |pad: usize| {
        format!(
            "GET /public/limit HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            sc.port(),
            "a".repeat(pad)
        )
    };
    let pad = 4096 - head(0).len();
    assert_eq!(head(pad).len(), 4096);
    let r = exchange(sc.port(), head(pad).as_bytes()).expect("an answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = exchange(sc.port(), head(pad + 1).as_bytes()).expect("an answer");
    assert_error(&r, 431, "headers_too_large");
    assert_eq!(
        up.records().len(),
        1,
        "only the head within the limit is forwarded"
    );
}

#[test]
fn an_unreachable_upstream_is_502_upstream_unavailable() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let sc = SidecarConfig::new(&dead, json!({})).spawn();
    let r = sc.get("/public/x", None);
    assert_error(&r, 502, "upstream_unavailable");
}

#[test]
fn a_slow_upstream_is_504_upstream_timeout() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"upstream": {"request_timeout": "1s"}}));
    let t0 = Instant::now();
    let r = sc.get("/public/slow?ms=3000", None);
    assert_error(&r, 504, "upstream_timeout");
    assert!(
        t0.elapsed() < Duration::from_millis(2900),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn two_authorization_headers_are_400() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = s(&sc.login("alice"), "access_token");
    let bearer = format!("Bearer {tok}");
    let r = raw(
        &sc,
        "GET",
        PRIVATE,
        &[("Authorization", &bearer), ("Authorization", &bearer)],
    );
    assert_error(&r, 400, "bad_request");
    let r = raw(
        &sc,
        "GET",
        "/public/x",
        &[
            ("Authorization", "Basic Zm9vOmJhcg=="),
            ("Authorization", &bearer),
        ],
    );
    assert_error(&r, 400, "bad_request");
    assert!(up.requests_to(PRIVATE).is_empty() && up.requests_to("/public/x").is_empty());
}

#[test]
fn a_token_in_the_query_string_is_never_used() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = s(&sc.login("alice"), "access_token");
    for q in ["access_token", "token", "bearer"] {
        let r = sc.get(&format!("{PRIVATE}?{q}={tok}"), None);
        assert_error(&r, 401, "missing_token");
    }
    assert!(up.requests_to(PRIVATE).is_empty());
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = s(&sc.login("alice"), "access_token");
    let r = raw(
        &sc,
        "GET",
        PRIVATE,
        &[("Authorization", &format!("bEaReR {tok}"))],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[test]
fn admin_paths_are_not_served_on_the_client_listener() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = sc.get("/metrics", None);
    assert_error(&r, 401, "missing_token");
    let tok = s(&sc.login("alice"), "access_token");
    let r = sc.get("/metrics", Some(&tok));
    assert!(
        !r.text().contains("sessiongate_http_requests_total"),
        "metrics leaked on the client listener"
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json()["path"],
        "/metrics",
        "it is the upstream's /metrics"
    );
    assert_eq!(up.requests_to("/metrics").len(), 1);
}
