//! Promises of the session routes that no other test held the binary to:
//! the absolute lifetime under steady refreshing, the client IP through a
//! trusted proxy (`new_ip`, the listing), the refresh rate limit, and the
//! security-event log lines (every field, and no token in any log line).

mod common;

use std::time::{Duration, Instant};

use common::*;

const EVENTS: &str = "sessiongate_security_events_total";

fn trusted() -> Value {
    json!({"server": {"trusted_proxies": ["127.0.0.1/32"]}})
}

fn refresh_from(sc: &Sidecar, refresh_token: &str, ip: &str, agent: &str) -> Response {
    sc.send(
        Request::post("/v1/auth/refresh")
            .header("X-Forwarded-For", ip)
            .header("User-Agent", agent)
            .json(&json!({"refresh_token": refresh_token})),
    )
}

fn listing(sc: &Sidecar, access: &str) -> Vec<Value> {
    let r = sc.get("/v1/auth/sessions", Some(access));
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["sessions"].as_array().cloned().expect("sessions")
}

/// Every stdout line parsed as JSON (the sidecar logs JSON to a pipe).
fn log_objects(sc: &Sidecar) -> Vec<Value> {
    sc.stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn security_lines(sc: &Sidecar, kind: &str) -> Vec<Value> {
    log_objects(sc)
        .into_iter()
        .filter(|o| o["target"] == "security" && o["type"] == kind)
        .collect()
}

/// Waits (bounded) for a security log line of `kind` (lines are flushed
/// every 100 ms).
fn wait_security_line(sc: &Sidecar, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = security_lines(sc, kind).into_iter().next() {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} security line in\n{}",
            sc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_absolute_lifetime_ends_a_session_that_is_refreshed_all_the_time() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"sessions": {"absolute_lifetime": "3s", "idle_timeout": "1h"}}),
    );
    let tok = sc.login("alice");
    let logged_in = Instant::now();
    let mut refresh = s(&tok, "refresh_token");
    let mut successes = 0;
    let expired = loop {
        let sent = Instant::now();
        let r = sc.refresh(&refresh);
        if r.status != 200 {
            break r;
        }
        assert!(
            sent < logged_in + Duration::from_secs(3),
            "a refresh sent {:?} after login succeeded: the absolute lifetime is 3s",
            sent - logged_in
        );
        successes += 1;
        refresh = s(&r.json(), "refresh_token");
        assert!(
            logged_in.elapsed() < Duration::from_secs(30),
            "still refreshing 30s after login"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_error(&expired, 401, "session_expired");
    assert!(
        expired.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("Your session has expired. Please sign in again.")),
        "{}",
        expired.describe()
    );
    assert!(
        successes >= 2,
        "only {successes} refreshes succeeded: the session was never kept active"
    );
    assert_eq!(
        sc.metric("sessiongate_refresh_total", &[("result", "expired")]),
        1.0
    );
}

#[test]
fn a_refresh_from_another_ip_behind_a_trusted_proxy_records_new_ip() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, trusted());
    let tok = sc.login_from("alice", "203.0.113.7", "ua-1");
    let access = s(&tok, "access_token");
    assert_eq!(listing(&sc, &access)[0]["ip"], "203.0.113.7");
    // A chain "client, other proxy": the right-most untrusted address counts.
    let r = refresh_from(
        &sc,
        &s(&tok, "refresh_token"),
        "192.0.2.99, 198.51.100.4",
        "ua-1",
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let next = r.json();
    assert_eq!(sc.metric(EVENTS, &[("type", "new_ip")]), 1.0);
    assert_eq!(sc.metric(EVENTS, &[("type", "new_device")]), 0.0);
    let sessions = listing(&sc, &s(&next, "access_token"));
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["ip"], "198.51.100.4");
    let line = wait_security_line(&sc, "new_ip");
    assert_eq!(line["ip"], "198.51.100.4", "{line}");
    assert_eq!(line["user_id"], "user-alice", "{line}");
    assert_eq!(line["session_id"], tok["session_id"], "{line}");
    // The same IP again is nothing new.
    let r = refresh_from(&sc, &s(&next, "refresh_token"), "198.51.100.4", "ua-1");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sc.metric(EVENTS, &[("type", "new_ip")]), 1.0);
}

#[test]
fn an_untrusted_peer_cannot_claim_another_ip_with_x_forwarded_for() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login_from("alice", "203.0.113.7", "ua-1");
    let r = refresh_from(&sc, &s(&tok, "refresh_token"), "198.51.100.4", "ua-1");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sc.metric(EVENTS, &[("type", "new_ip")]), 0.0);
    let sessions = listing(&sc, &s(&r.json(), "access_token"));
    assert_eq!(sessions[0]["ip"], "127.0.0.1", "{sessions:?}");
}

#[test]
fn too_many_refreshes_from_one_ip_are_429_with_retry_after_and_use_up_nothing() {
    let up = Upstream::start();
    let mut overrides = trusted();
    overrides["rate_limits"] = json!({"refresh": {"per_minute": 1, "burst": 2}});
    let sc = Sidecar::start(&up, overrides);
    let tok = sc.login_from("alice", "192.0.2.10", "ua");
    let mut refresh = s(&tok, "refresh_token");
    for _ in 0..2 {
        let r = refresh_from(&sc, &refresh, "192.0.2.10", "ua");
        assert_eq!(r.status, 200, "{}", r.describe());
        refresh = s(&r.json(), "refresh_token");
    }
    let r = refresh_from(&sc, &refresh, "192.0.2.10", "ua");
    assert_error(&r, 429, "rate_limited");
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no integer Retry-After: {}", r.describe()));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Garbage is limited too: the bucket is checked before anything else.
    assert_error(
        &refresh_from(&sc, "garbage", "192.0.2.10", "ua"),
        429,
        "rate_limited",
    );
    // The limited request used up nothing: the same token works from another IP.
    let r = refresh_from(&sc, &refresh, "192.0.2.11", "ua");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["session_id"], tok["session_id"]);
}

/// Every security event type as a log line with SPEC 8's fields, and no
/// token issued during the test in any line of stdout or stderr.
#[test]
fn security_event_log_lines_carry_every_field_and_no_log_line_carries_a_token() {
    let up = Upstream::start();
    let mut overrides = trusted();
    overrides["sessions"] = json!({"reuse_grace": "0s"});
    let mut sc = Sidecar::start(&up, overrides);
    let mut tokens: Vec<String> = Vec::new();
    let mut keep = |v: &Value| {
        for k in ["access_token", "refresh_token"] {
            tokens.push(s(v, k));
        }
    };

    let a = sc.login_from("alice", "203.0.113.1", "ua-one");
    keep(&a);
    // new_ip and new_device at once.
    let r = refresh_from(&sc, &s(&a, "refresh_token"), "203.0.113.2", "ua-two");
    assert_eq!(r.status, 200, "{}", r.describe());
    keep(&r.json());
    // refresh_token_reuse: the rotated token again.
    let r = refresh_from(&sc, &s(&a, "refresh_token"), "203.0.113.3", "ua-thief");
    assert_error(&r, 401, "refresh_token_reused");
    let b = sc.login_from("alice", "203.0.113.4", "ua-b");
    let c = sc.login_from("alice", "203.0.113.5", "ua-c");
    keep(&b);
    keep(&c);
    let r = sc.send(
        Request::new(
            "DELETE",
            &format!("/v1/auth/sessions/{}", s(&c, "session_id")),
        )
        .header("X-Forwarded-For", "203.0.113.4")
        .bearer(&s(&b, "access_token")),
    );
    assert_eq!(r.status, 204, "{}", r.describe());
    let r = sc.send(
        Request::post("/v1/auth/sessions/revoke-all")
            .header("X-Forwarded-For", "203.0.113.4")
            .header("User-Agent", "ua-b")
            .bearer(&s(&b, "access_token")),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sc.stop(), Some(0), "{}", sc.logs());

    let expected = [
        ("new_ip", &a, "203.0.113.2", "ua-two"),
        ("new_device", &a, "203.0.113.2", "ua-two"),
        ("refresh_token_reuse", &a, "203.0.113.3", "ua-thief"),
        ("session_revoked", &c, "203.0.113.4", "sessiongate-tests/1"),
        ("revoke_all", &b, "203.0.113.4", "ua-b"),
    ];
    for (kind, session, ip, agent) in expected {
        let lines = security_lines(&sc, kind);
        assert_eq!(lines.len(), 1, "{kind} lines: {lines:?}");
        let e = &lines[0];
        for field in ["type", "user_id", "session_id", "ip", "user_agent", "at"] {
            assert!(
                e[field].as_str().is_some_and(|v| !v.is_empty()),
                "{kind} lacks {field}: {e}"
            );
        }
        assert_eq!(e["user_id"], "user-alice", "{e}");
        assert_eq!(e["session_id"], session["session_id"], "{kind}: {e}");
        assert_eq!(
            (e["ip"].as_str(), e["user_agent"].as_str()),
            (Some(ip), Some(agent)),
            "{kind}: {e}"
        );
        let at = e["at"].as_str().unwrap_or_default();
        assert!(
            at.len() >= 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
            "{kind}: `at` is not RFC 3339 UTC: {at}"
        );
    }

    // Every security line, `login` included, has the fields.
    let all_events: Vec<Value> = log_objects(&sc)
        .into_iter()
        .filter(|o| o["target"] == "security")
        .collect();
    assert_eq!(security_lines(&sc, "login").len(), 3, "{all_events:?}");
    assert_eq!(all_events.len(), 3 + expected.len(), "{all_events:?}");
    for e in &all_events {
        for field in ["type", "user_id", "session_id", "ip", "user_agent", "at"] {
            assert!(
                e[field].as_str().is_some_and(|v| !v.is_empty()),
                "lacks {field}: {e}"
            );
        }
    }

    let stderr = std::fs::read_to_string(sc.dir().join("stderr.log")).unwrap_or_default();
    let all = sc.stdout() + &stderr;
    for t in &tokens {
        assert!(!all.contains(t.as_str()), "a token is in the logs");
        // Nor its signature (or MAC) on its own.
        let tail = t.rsplit('.').next().unwrap_or(t);
        assert!(
            !all.contains(&tail[tail.len() - 40..]),
            "token material is in the logs"
        );
    }
}

/// SPEC 4.2 on SQLite once the cleanup task has deleted the expired row:
/// the refresh token still carries a valid MAC, so the session did exist and
/// ran out; the answer should stay `session_expired`.
#[test]
fn an_idle_session_is_session_expired_even_after_the_cleanup_deleted_it() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"sessions": {"idle_timeout": "1s", "cleanup_interval": "1s"}}),
    );
    let tok = sc.login("alice");
    let db = rusqlite::Connection::open(sc.dir().join("sessiongate.db")).expect("open the db");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: i64 = db
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("count sessions");
        if rows == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the cleanup never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_error(
        &sc.refresh(&s(&tok, "refresh_token")),
        401,
        "session_expired",
    );
}
