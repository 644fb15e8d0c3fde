//! The test harness, in the spirit of zero2prod's `spawn_app()`: every test
//! starts its own real upstream and its own real `sessiongate` process on
//! free ports with a temp dir, and talks to them over real sockets.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod jwt;
pub mod metrics;
pub mod redis_server;
pub mod scripted;
pub mod sidecar;
pub mod tls;
pub mod upstream;
pub mod yaml;

pub use client::{exchange, Request, Response};
pub use serde_json::{json, Value};
pub use sidecar::{free_port, keygen, run_cli, Sidecar, SidecarConfig};
pub use upstream::{Recorded, Upstream};

/// A path matched by `{prefix: /, auth: required}`.
pub const PRIVATE: &str = "/api/things";

/// Asserts a SPEC 4 error: status, `error` code, a `message`, and for 401
/// the RFC 6750 challenge (with `error="invalid_token"` iff a token was sent).
pub fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "expected {status} {code}, got {}",
        r.describe()
    );
    let body = r.json();
    assert_eq!(body["error"], code, "wrong error code: {}", r.describe());
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        r.describe()
    );
    if status == 401 {
        let challenge = r
            .header("WWW-Authenticate")
            .unwrap_or_else(|| panic!("401 without WWW-Authenticate: {}", r.describe()));
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(r#"realm="sessiongate""#),
            "challenge: {challenge}"
        );
        if code == "missing_token" {
            assert!(
                !challenge.contains("error="),
                "no token was sent, yet: {challenge}"
            );
        } else {
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "challenge: {challenge}"
            );
        }
    }
}

/// The values of header `name` in an upstream echo (case-insensitive, `_` == `-`).
pub fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| upstream::same_header(h[0].as_str().unwrap_or_default(), name))
                .map(|h| h[1].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Token responses as strings.
pub fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_owned()
}

/// `n` sidecars with the same `overrides` (e.g. one shared store), all signing
/// with the first one's key, so a token from one verifies on every other.
pub fn replicas(up: &Upstream, overrides: Value, n: usize) -> Vec<Sidecar> {
    let first = SidecarConfig::new(&up.url(), overrides.clone());
    let pem = first.key_pem();
    let mut out = vec![first.spawn()];
    for _ in 1..n {
        let cfg = SidecarConfig::new(&up.url(), overrides.clone());
        cfg.write_file("k1.pem", &pem);
        out.push(cfg.spawn());
    }
    out
}

/// Polls `sc` with `access` (accepted meanwhile) until it answers 401
/// session_revoked; how long that took from `since`. Fails after 5 s.
pub fn time_until_revoked(
    sc: &Sidecar,
    access: &str,
    since: std::time::Instant,
) -> std::time::Duration {
    loop {
        let r = sc.get(PRIVATE, Some(access));
        if r.status == 401 {
            assert_error(&r, 401, "session_revoked");
            return since.elapsed();
        }
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(
            since.elapsed() < std::time::Duration::from_secs(5),
            "never revoked\n{}",
            sc.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
