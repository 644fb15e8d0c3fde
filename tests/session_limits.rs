//! Bounds on what one user can make sessiongate hold (issue 12): the
//! per-user session cap (`sessions.max_per_user`), the paged session list
//! (SPEC 4.4), and the claims size login accepts. Black-box: the real binary
//! over real sockets, on SQLite and on a real redis-server.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;

const REVOKED: &str = "sessiongate_sessions_revoked_total";

/// Session timestamps are milliseconds: this keeps two steps' times apart,
/// so "least recently active" has one answer.
fn next_millisecond() {
    thread::sleep(Duration::from_millis(5));
}

fn capped(max: u64) -> Value {
    json!({"sessions": {"max_per_user": max}})
}

fn on_redis(redis: &RedisServer, mut extra: Value) -> Value {
    yaml::deep_merge(
        &mut extra,
        json!({"store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "lim:"}}}),
    );
    extra
}

fn access(t: &Value) -> String {
    s(t, "access_token")
}

/// Waits (at most 5 s) for a security log line of `kind` about session `sid`.
fn security_line(sc: &Sidecar, kind: &str, sid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = sc
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|o| o["target"] == "security" && o["type"] == kind && o["session_id"] == sid);
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event for {sid}\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn listed_ids(sc: &Sidecar, token: &str) -> Vec<String> {
    let r = sc.get("/v1/auth/sessions", Some(token));
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["sessions"]
        .as_array()
        .expect("a sessions array")
        .iter()
        .map(|v| s(v, "id"))
        .collect()
}

/// Four logins with a cap of 3, the first one refreshed in between: the second
/// (now the least recently active) ends, at once and for good.
/// `other` is a second replica on the same store (Redis), or the same sidecar.
fn the_fourth_login_ends_the_least_recently_active_session(sc: &Sidecar, other: &Sidecar) {
    let t1 = sc.login("alice");
    next_millisecond();
    let t2 = sc.login("alice");
    next_millisecond();
    let t3 = sc.login("alice");
    next_millisecond();
    let r = sc.refresh(&s(&t1, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    let t1 = r.json();
    for t in [&t1, &t2, &t3] {
        assert_eq!(other.get(PRIVATE, Some(&access(t))).status, 200);
    }
    next_millisecond();

    let t4 = sc.login("alice");

    let r = sc.get(PRIVATE, Some(&access(&t2)));
    assert_error(&r, 401, "session_revoked");
    // On every replica within SPEC 5's second.
    let since = Instant::now();
    loop {
        let r = other.get(PRIVATE, Some(&access(&t2)));
        if r.status == 401 {
            assert_error(&r, 401, "session_revoked");
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "the other replica still accepts the ended session: {}",
            r.describe()
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_error(
        &sc.refresh(&s(&t2, "refresh_token")),
        401,
        "session_revoked",
    );
    for t in [&t1, &t3, &t4] {
        assert_eq!(sc.get(PRIVATE, Some(&access(t))).status, 200);
    }
    assert_eq!(
        listed_ids(sc, &access(&t4)),
        [
            s(&t4, "session_id"),
            s(&t3, "session_id"),
            s(&t1, "session_id")
        ]
    );
    assert_eq!(sc.metric(REVOKED, &[("reason", "limit")]), 1.0);
    let event = security_line(sc, "session_revoked", &s(&t2, "session_id"));
    assert_eq!(event["by"], "limit", "{event}");
    assert_eq!(event["user_id"], "user-alice", "{event}");
    // Another user's sessions are theirs alone.
    let b = sc.login("bob");
    assert_eq!(listed_ids(sc, &access(&b)), [s(&b, "session_id")]);
    assert_eq!(sc.metric(REVOKED, &[("reason", "limit")]), 1.0);
}

#[test]
fn a_login_beyond_the_cap_ends_the_least_recently_active_session_on_sqlite() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, capped(3));
    the_fourth_login_ends_the_least_recently_active_session(&sc, &sc);
}

#[test]
fn a_login_beyond_the_cap_ends_the_least_recently_active_session_on_every_redis_replica() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let first = SidecarConfig::new(&up.url(), on_redis(&redis, capped(3)));
    let second = SidecarConfig::new(&up.url(), on_redis(&redis, capped(3)));
    second.write_file("k1.pem", &first.key_pem());
    let (a, b) = (first.spawn(), second.spawn());
    the_fourth_login_ends_the_least_recently_active_session(&a, &b);
}

#[test]
fn the_cap_must_be_at_least_one() {
    let up = Upstream::start();
    let cfg = SidecarConfig::new(&up.url(), capped(0));
    let path = cfg.write();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sessions.max_per_user"), "{text}");
}

/// Five sessions, pages of two: 2, 2, 1, newest first, each once.
fn pages_of_two(sc: &Sidecar) {
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(sc.login("alice"));
        next_millisecond();
    }
    let me = access(&logins[4]);
    let newest_first: Vec<String> = logins.iter().rev().map(|t| s(t, "session_id")).collect();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut target = "/v1/auth/sessions?limit=2".to_owned();
    loop {
        let r = sc.get(&target, Some(&me));
        assert_eq!(r.status, 200, "{}", r.describe());
        let page = r.json();
        let rows = page["sessions"].as_array().expect("sessions").clone();
        sizes.push(rows.len());
        for row in &rows {
            assert_eq!(row["current"], row["id"] == newest_first[0], "{row}");
            seen.push(s(row, "id"));
        }
        match &page["next"] {
            Value::Null => break,
            Value::String(next) => target = format!("/v1/auth/sessions?limit=2&before={next}"),
            other => panic!("`next` must be a string or null, got {other}"),
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, newest_first);
    // No limit: the default page holds them all, and says it is the last.
    let all = sc.get("/v1/auth/sessions", Some(&me)).json();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 5);
    assert_eq!(all["next"], Value::Null);
}

#[test]
fn the_session_list_comes_in_pages_on_sqlite() {
    let up = Upstream::start();
    pages_of_two(&Sidecar::start(&up, json!({})));
}

#[test]
fn the_session_list_comes_in_pages_on_redis() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    pages_of_two(&Sidecar::start(&up, on_redis(&redis, json!({}))));
}

#[test]
fn a_malformed_page_query_or_cursor_is_400_invalid_request() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let alice = sc.login("alice");
    sc.login("alice");
    let bob = sc.login("bob");
    sc.login("bob");
    let next_of = |token: &str| {
        let page = sc.get("/v1/auth/sessions?limit=1", Some(token)).json();
        s(&page, "next")
    };
    let cursor = next_of(&access(&alice));
    let bobs_cursor = next_of(&access(&bob));
    // The genuine cursor works.
    let r = sc.get(
        &format!("/v1/auth/sessions?limit=1&before={cursor}"),
        Some(&access(&alice)),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    // One character changed, anywhere in it: refused.
    let flip = |i: usize| {
        let mut b = cursor.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let mut queries = vec![
        "limit=0".to_owned(),
        "limit=201".to_owned(),
        "limit=abc".to_owned(),
        "limit=".to_owned(),
        "limit=2&limit=3".to_owned(),
        "before=garbage".to_owned(),
        "before=".to_owned(),
        "before=%41%41".to_owned(),
        "offset=2".to_owned(),
        format!("before={bobs_cursor}"),
        format!("before={cursor}&page=2"),
    ];
    for i in [0, cursor.len() / 2, cursor.len() - 1] {
        queries.push(format!("before={}", flip(i)));
    }
    queries.push(format!("before={}", &cursor[..cursor.len() - 2]));
    for q in &queries {
        let r = sc.get(&format!("/v1/auth/sessions?{q}"), Some(&access(&alice)));
        assert_error(&r, 400, "invalid_request");
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{q}");
    }
    assert_eq!(
        sc.get("/v1/auth/sessions?limit=200", Some(&access(&alice)))
            .status,
        200
    );
}

#[test]
fn login_refuses_claims_larger_than_the_cache_budget_assumes() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let claims = |bytes: usize| {
        let filler = bytes - r#"{"blob":""}"#.len();
        json!({"blob": "x".repeat(filler)})
    };
    let login = |c: Value| {
        sc.send(
            Request::post("/v1/auth/login")
                .json(&json!({"username": "alice", "password": "pw", "claims": c})),
        )
    };
    let r = login(claims(513));
    assert_error(&r, 502, "upstream_unavailable");
    let r = login(claims(512));
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = sc.get(PRIVATE, Some(&access(&r.json()))).json();
    let forwarded = echoed(&echo, "X-Auth-Claims");
    assert_eq!(forwarded, [claims(512).to_string()]);
}
