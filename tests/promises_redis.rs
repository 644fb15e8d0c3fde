//! The Redis store seen through the real binary: `key_prefix` isolation
//! between deployments sharing one server, TTLs on every key a session
//! writes (and a session gone with its TTL), user ids with braces, and
//! prompt 503s on every store-backed route while Redis is down.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;

fn on_redis(redis: &RedisServer, prefix: &str, extra: Value) -> Value {
    let mut v = json!({
        "store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": prefix}},
    });
    yaml::deep_merge(&mut v, extra);
    v
}

/// The keys matching `pattern`, from a RESP array reply.
fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let reply = redis.command(&["KEYS", pattern]);
    let mut lines = reply.split("\r\n");
    let count: usize = lines
        .next()
        .and_then(|l| l.strip_prefix('*'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an array reply: {reply:?}"));
    let out: Vec<String> = lines
        .filter(|l| !l.is_empty() && !l.starts_with('$'))
        .map(str::to_owned)
        .collect();
    assert_eq!(out.len(), count, "reply cut short: {reply:?}");
    out
}

/// `PTTL key` in ms (-1: no TTL, -2: no key).
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    let reply = redis.command(&["PTTL", key]);
    reply
        .trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PTTL {key}: {reply:?}"))
}

#[test]
fn two_deployments_with_different_key_prefixes_on_one_redis_do_not_see_each_other() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let a_cfg = SidecarConfig::new(&up.url(), on_redis(&redis, "a:", json!({})));
    let pem = a_cfg.key_pem();
    let a = a_cfg.spawn();
    // The same signing key, so only the store can tell them apart.
    let b_cfg = SidecarConfig::new(&up.url(), on_redis(&redis, "b:", json!({})));
    b_cfg.write_file("k1.pem", &pem);
    let b = b_cfg.spawn();

    let on_a = a.login("alice");
    let on_b = b.login("alice");
    // B verifies the MAC (same key) but has no such session: over, for B.
    let r = b.refresh(&s(&on_a, "refresh_token"));
    assert_error(&r, 401, "session_expired");
    let listed = b.get("/v1/auth/sessions", Some(&s(&on_a, "access_token")));
    assert_eq!(listed.status, 200, "{}", listed.describe());
    let ids: Vec<Value> = listed.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].clone())
        .collect();
    assert_eq!(ids, [on_b["session_id"].clone()], "b lists a's session");
    // A revoke-all on b ends b's sessions only.
    let r = b.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&s(&on_b, "access_token")));
    assert_eq!(r.json()["revoked"], 1, "{}", r.describe());
    assert_eq!(a.get(PRIVATE, Some(&s(&on_a, "access_token"))).status, 200);
    let r = a.refresh(&s(&on_a, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());

    let all = keys(&redis, "*");
    assert!(!all.is_empty());
    for k in &all {
        assert!(
            k.starts_with("a:") || k.starts_with("b:"),
            "a key outside both prefixes: {k} in {all:?}"
        );
    }
    assert!(all.iter().any(|k| k.starts_with("a:")) && all.iter().any(|k| k.starts_with("b:")));
}

#[test]
fn every_key_a_session_writes_has_a_ttl_within_the_session_lifetimes() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(
        &up,
        on_redis(
            &redis,
            "ttl:",
            json!({"sessions": {"idle_timeout": "1h", "absolute_lifetime": "2h"},
                   "security_events": {"retain": "3h"}}),
        ),
    );
    let tok = sc.login_with_agent("alice", "ua-1");
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("User-Agent", "ua-2")
            .json(&json!({"refresh_token": s(&tok, "refresh_token")})),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let session_key = format!("ttl:{{{}}}:s", s(&tok, "session_id"));
    let ms = pttl(&redis, &session_key);
    assert!(
        (3_500_000..=3_600_000).contains(&ms),
        "the session hash lives until the idle timeout (1h): PTTL {ms}"
    );
    let user = format!("ttl:{{u:{}}}", hex("user-alice"));
    for (suffix, max) in [(":sessions", 2 * 3_600_000), (":events", 3 * 3_600_000)] {
        let ms = pttl(&redis, &format!("{user}{suffix}"));
        assert!(
            ms > 0 && ms <= max,
            "{user}{suffix} must expire within {max} ms: PTTL {ms}"
        );
    }
    // Keys that hold no session data and are trimmed by the cleanup task may
    // live on; everything else must expire.
    // PTTL -1: no expiry; -2: the key expired since it was listed (a
    // rate-limit window of a second can), which is what is asked of it.
    for k in keys(&redis, "ttl:*") {
        let ms = pttl(&redis, &k);
        let shared = k == "ttl:{users}" || k == "ttl:{rev}";
        assert!(
            shared || ms > 0 || ms == -2,
            "{k} never expires (PTTL {ms})"
        );
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Logs in on Redis with `idle_timeout: 2s`, waits (bounded) until Redis
/// itself has expired the session hash, and refreshes: the answer.
fn refresh_after_the_session_key_expired() -> Response {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(
        &up,
        on_redis(&redis, "idle:", json!({"sessions": {"idle_timeout": "2s"}})),
    );
    let tok = sc.login("alice");
    let key = format!("idle:{{{}}}:s", s(&tok, "session_id"));
    let ms = pttl(&redis, &key);
    assert!((1..=2000).contains(&ms), "{key}: PTTL {ms}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis.command(&["EXISTS", &key]).trim() != ":0" {
        assert!(Instant::now() < deadline, "{key} never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    sc.refresh(&s(&tok, "refresh_token"))
}

/// SPEC 4.2: an idle session's refresh is 401 `session_expired` ("Your
/// session has expired. Please sign in again."), so the client knows to ask
/// the user to sign in. On Redis the session hash's TTL ends at that very
/// moment, so the row is already gone when the refresh arrives.
#[test]
fn an_idle_session_on_redis_is_session_expired_once_its_key_has_expired() {
    assert_error(
        &refresh_after_the_session_key_expired(),
        401,
        "session_expired",
    );
}

#[test]
fn a_user_id_with_braces_works_end_to_end_on_redis() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(&up, on_redis(&redis, "br:", json!({})));
    let carol = sc.login("{carol}");
    let carol2 = sc.login("{carol}");
    let alice = sc.login("alice");
    let r = sc.get(PRIVATE, Some(&s(&carol, "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(echoed(&r.json(), "X-Auth-User-Id"), ["user-{carol}"]);
    let r = sc.refresh(&s(&carol, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    let carol = r.json();
    let listed = sc.get("/v1/auth/sessions", Some(&s(&carol, "access_token")));
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(2));
    let r =
        sc.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&s(&carol2, "access_token")));
    assert_eq!(r.json()["revoked"], 2, "{}", r.describe());
    assert_error(
        &sc.get(PRIVATE, Some(&s(&carol, "access_token"))),
        401,
        "session_revoked",
    );
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&alice, "access_token"))).status,
        200
    );
    let index = format!("br:{{u:{}}}:sessions", hex("user-{carol}"));
    assert!(
        redis.command(&["SCARD", &index]).starts_with(":2"),
        "{index}"
    );
}

/// Sends `req` and checks it is a prompt 503 `store_unavailable`.
fn prompt_503(sc: &Sidecar, what: &str, req: Request) {
    let started = Instant::now();
    let r = sc.send(req);
    let took = started.elapsed();
    assert_error(&r, 503, "store_unavailable");
    assert!(
        took < Duration::from_secs(4),
        "{what} took {took:?} with Redis down"
    );
}

#[test]
fn with_redis_down_every_store_backed_route_is_a_prompt_503() {
    let (up, mut redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(&up, on_redis(&redis, "out:", json!({})));
    let tok = sc.login("alice");
    let other = sc.login("alice");
    let access = s(&tok, "access_token");
    redis.stop();
    let body = |t: &str| json!({"refresh_token": t});
    prompt_503(
        &sc,
        "login",
        Request::post("/v1/auth/login").json(&json!({"username": "alice", "password": "pw"})),
    );
    prompt_503(
        &sc,
        "refresh",
        Request::post("/v1/auth/refresh").json(&body(&s(&tok, "refresh_token"))),
    );
    prompt_503(
        &sc,
        "list",
        Request::get("/v1/auth/sessions").bearer(&access),
    );
    prompt_503(
        &sc,
        "delete",
        Request::new(
            "DELETE",
            &format!("/v1/auth/sessions/{}", s(&other, "session_id")),
        )
        .bearer(&access),
    );
    prompt_503(
        &sc,
        "revoke-all",
        Request::post("/v1/auth/sessions/revoke-all").bearer(&access),
    );
    prompt_503(
        &sc,
        "logout",
        Request::post("/v1/auth/logout").bearer(&access),
    );
    assert_eq!(
        sc.get("/public/x", None).status,
        200,
        "anonymous routes need no Redis"
    );
}
