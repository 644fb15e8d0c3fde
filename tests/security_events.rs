//! GET /v1/auth/security-events (SPEC 4.8), black-box against the real
//! binary on SQLite and on a real redis-server: what a user sees of their own
//! security activity, its order and paging, and what is refused.

mod common;

use std::collections::HashSet;

use common::redis_server::RedisServer;
use common::*;

const EVENTS: &str = "/v1/auth/security-events";
const FIELDS: [&str; 7] = [
    "id",
    "type",
    "at",
    "session_id",
    "ip",
    "user_agent",
    "current_session",
];

/// A sidecar trusting the loopback proxy's X-Forwarded-For, on `redis` if
/// given (the server must outlive the sidecar), else on SQLite.
fn start(up: &Upstream, redis: Option<&RedisServer>) -> Sidecar {
    let mut overrides = json!({"server": {"trusted_proxies": ["127.0.0.1/32"]}});
    if let Some(r) = redis {
        overrides["store"] =
            json!({"backend": "redis", "redis": {"url": r.url(), "key_prefix": "ev:"}});
    }
    Sidecar::start(up, overrides)
}

fn refresh_from(sc: &Sidecar, tok: &Value, ip: &str, agent: &str) -> Value {
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("X-Forwarded-For", ip)
            .header("User-Agent", agent)
            .json(&json!({"refresh_token": s(tok, "refresh_token")})),
    );
    assert_eq!(r.status, 200, "refresh: {}", r.describe());
    r.json()
}

/// One page of the caller's events, asserting 200 and SPEC 4.8's shape.
fn page(sc: &Sidecar, tok: &Value, query: &str) -> (Vec<Value>, Option<String>) {
    let r = sc.send(Request::get(&format!("{EVENTS}{query}")).bearer(&s(tok, "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
    let body = r.json();
    let keys: HashSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, HashSet::from(["events", "next"]), "{body}");
    let events = body["events"].as_array().expect("an events array").clone();
    for e in &events {
        let keys: HashSet<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, HashSet::from(FIELDS), "{e}");
        assert!(e["current_session"].is_boolean(), "{e}");
    }
    (events, body["next"].as_str().map(str::to_owned))
}

/// Every event of the caller, following `next` with `limit` per page.
fn all_pages(sc: &Sidecar, tok: &Value, limit: usize) -> Vec<Value> {
    let (mut all, mut query) = (Vec::new(), format!("?limit={limit}"));
    for _ in 0..100 {
        let (events, next) = page(sc, tok, &query);
        assert!(events.len() <= limit);
        all.extend(events);
        match next {
            Some(c) => query = format!("?limit={limit}&before={c}"),
            None => return all,
        }
    }
    panic!("the pages never ended");
}

/// Newest first: `(at, id)` strictly decreasing down the list.
fn assert_newest_first(events: &[Value]) {
    for w in events.windows(2) {
        let key = |e: &Value| (s(e, "at"), s(e, "id"));
        assert!(
            key(&w[0]) > key(&w[1]),
            "out of order: {} then {}",
            w[0],
            w[1]
        );
    }
}

fn find<'a>(events: &'a [Value], kind: &str, session: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == kind && e["session_id"] == session)
        .unwrap_or_else(|| panic!("no {kind} event of {session} in {events:?}"))
}

fn own_events_are_listed_newest_first_with_the_current_session_marked(redis: Option<RedisServer>) {
    let up = Upstream::start();
    let mut sc = start(&up, redis.as_ref());
    let a = sc.login_from("alice", "203.0.113.7", "laptop");
    let b = sc.login_from("alice", "203.0.113.7", "laptop");
    let a = refresh_from(&sc, &a, "198.51.100.4", "laptop");
    let a = refresh_from(&sc, &a, "198.51.100.4", "phone");
    let bob = sc.login_from("bob", "192.0.2.9", "bobs");
    let (sa, sb) = (s(&a, "session_id"), s(&b, "session_id"));

    let (seen_by_b, next) = page(&sc, &b, "");
    assert_eq!(next, None);
    assert_eq!(seen_by_b.len(), 4, "{seen_by_b:?}");
    assert_newest_first(&seen_by_b);
    let order = [
        find(&seen_by_b, "login", &sa),
        find(&seen_by_b, "login", &sb),
        find(&seen_by_b, "new_ip", &sa),
        find(&seen_by_b, "new_device", &sa),
    ];
    for w in order.windows(2) {
        assert!(s(w[0], "at") <= s(w[1], "at"), "{} after {}", w[0], w[1]);
    }
    assert_eq!(order[2]["ip"], "198.51.100.4");
    assert_eq!(order[3]["user_agent"], "phone");
    assert_eq!(order[0]["ip"], "203.0.113.7");
    for e in &seen_by_b {
        assert_eq!(e["current_session"], e["session_id"] == sb.as_str(), "{e}");
        assert_eq!(s(e, "id").len(), 22, "{e}");
    }
    let ids: HashSet<String> = seen_by_b.iter().map(|e| s(e, "id")).collect();
    assert_eq!(ids.len(), 4, "ids are unique");
    // The same events through session A: the mark follows the caller.
    let (seen_by_a, _) = page(&sc, &a, "?limit=200");
    assert_eq!(seen_by_a.len(), 4);
    for e in &seen_by_a {
        assert_eq!(e["current_session"], e["session_id"] == sa.as_str(), "{e}");
    }

    // Bob sees his login only; no one sees token material.
    let (seen_by_bob, _) = page(&sc, &bob, "");
    assert_eq!(seen_by_bob.len(), 1);
    assert_eq!(seen_by_bob[0]["session_id"], s(&bob, "session_id"));
    let raw = sc
        .send(Request::get(EVENTS).bearer(&s(&a, "access_token")))
        .text();
    for t in [&a, &b] {
        for secret in [s(t, "access_token"), s(t, "refresh_token")] {
            assert!(!raw.contains(&secret), "token material in {raw}");
        }
    }
    assert!(
        sc.metric(
            "sessiongate_http_requests_total",
            &[("route", "security_events")]
        ) >= 4.0
    );
    sc.assert_no_panic();
    // The security log line names the same id (SPEC 8).
    let id = s(order[2], "id");
    assert_eq!(sc.stop(), Some(0));
    let logged = sc.stdout_lines().into_iter().any(|l| {
        serde_json::from_str::<Value>(&l)
            .is_ok_and(|o| o["target"] == "security" && o["type"] == "new_ip" && o["id"] == id)
    });
    assert!(logged, "no security log line with {id}");
}

fn pages_of_two_walk_every_event_once(redis: Option<RedisServer>) {
    let up = Upstream::start();
    let sc = start(&up, redis.as_ref());
    let mut a = sc.login_from("alice", "203.0.113.7", "agent-0");
    let bob = sc.login_from("bob", "203.0.113.7", "agent-0");
    for i in 1..=4 {
        // Each refresh from a new User-Agent: one new_device event each.
        a = refresh_from(&sc, &a, "203.0.113.7", &format!("agent-{i}"));
        sc.login_from("bob", "203.0.113.7", "agent-0");
    }
    let everything = all_pages(&sc, &a, 200);
    assert_eq!(everything.len(), 5, "{everything:?}");
    assert_newest_first(&everything);
    let (first, next) = page(&sc, &a, "?limit=2");
    assert_eq!(first.len(), 2);
    assert!(next.is_some());
    assert_eq!(all_pages(&sc, &a, 2), everything);
    assert_eq!(all_pages(&sc, &a, 1), everything);
    assert_eq!(all_pages(&sc, &a, 5), everything);
    let (default, next) = page(&sc, &a, "");
    assert_eq!((default, next), (everything, None));

    // Alice's cursor is hers: Bob cannot page with it.
    let cursor = next_of(&sc, &a, "?limit=2");
    let r = sc
        .send(Request::get(&format!("{EVENTS}?before={cursor}")).bearer(&s(&bob, "access_token")));
    assert_error(&r, 400, "invalid_request");
    assert_eq!(all_pages(&sc, &bob, 2).len(), 5);
    sc.assert_no_panic();
}

fn next_of(sc: &Sidecar, tok: &Value, query: &str) -> String {
    page(sc, tok, query).1.expect("a next cursor")
}

fn bad_requests_are_refused(redis: Option<RedisServer>) {
    let up = Upstream::start();
    let sc = start(&up, redis.as_ref());
    let a = sc.login_from("alice", "203.0.113.7", "laptop");
    sc.login_from("alice", "203.0.113.7", "laptop");
    let access = s(&a, "access_token");
    let cursor = next_of(&sc, &a, "?limit=1");
    // The same cursor with one character changed.
    let mut edited = cursor.clone().into_bytes();
    edited[12] = if edited[12] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    for query in [
        "?limit=0".to_owned(),
        "?limit=201".into(),
        "?limit=abc".into(),
        "?limit=1&limit=2".into(),
        "?before=not-a-cursor".into(),
        format!("?before={edited}"),
        "?before=a%2Fb".into(),
        "?user_id=bob".into(),
        "?offset=1".into(),
    ] {
        let r = sc.send(Request::get(&format!("{EVENTS}{query}")).bearer(&access));
        assert_error(&r, 400, "invalid_request");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "{query}"
        );
    }
    assert_error(&sc.send(Request::get(EVENTS)), 401, "missing_token");
    assert_error(
        &sc.send(Request::get(EVENTS).bearer("not.a.token")),
        401,
        "invalid_token",
    );
    let post = sc.send(Request::post(EVENTS).bearer(&access));
    assert_error(&post, 400, "invalid_request");
    // The genuine cursor still works after all that.
    let (rest, next) = page(&sc, &a, &format!("?before={cursor}"));
    assert_eq!((rest.len(), next), (1, None));
    sc.assert_no_panic();
}

/// Each case once on SQLite and once on its own redis-server.
macro_rules! on_both_backends {
    ($($case:ident),*) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(None) })*
        }
        mod redis {
            use super::RedisServer;
            $(#[test] fn $case() { super::$case(Some(RedisServer::start())) })*
        }
    };
}

on_both_backends!(
    own_events_are_listed_newest_first_with_the_current_session_marked,
    pages_of_two_walk_every_event_once,
    bad_requests_are_refused
);
