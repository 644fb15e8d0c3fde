//! Several real sidecar processes sharing one real `redis-server` (issue 5):
//! sessions move between replicas, revocations reach every replica within
//! 1 s, rotation stays atomic across replicas, and a Redis outage is survived.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;

/// Propagation bound of SPEC 5.
const PROPAGATION: Duration = Duration::from_secs(1);

fn redis_overrides(redis: &RedisServer, extra: Value) -> Value {
    let mut v = json!({
        "store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "it:"}},
    });
    yaml::deep_merge(&mut v, extra);
    v
}

/// `n` sidecars on one Redis, all signing with the first one's key.
fn replicas(up: &Upstream, redis: &RedisServer, n: usize, extra: Value) -> Vec<Sidecar> {
    common::replicas(up, redis_overrides(redis, extra), n)
}

#[test]
fn a_login_on_one_replica_works_on_another() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(&up, &redis, 2, json!({}));
    let t = rs[0].login("alice");
    let r = rs[1].get(PRIVATE, Some(&s(&t, "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
    let refreshed = rs[1].refresh(&s(&t, "refresh_token"));
    assert_eq!(refreshed.status, 200, "{}", refreshed.describe());
    let listed = rs[0].send(Request::get("/v1/auth/sessions").bearer(&s(&t, "access_token")));
    assert_eq!(listed.status, 200, "{}", listed.describe());
    let sessions = listed.json()["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], t["session_id"]);
    assert_eq!(sessions[0]["current"], true);
}

/// A session's last access tokens outlive its record: Redis drops the record
/// at the session's end (here `absolute_lifetime: 2s`) while the token (15
/// minutes) is still valid. Ending such a session by logout (access or
/// refresh token), by deleting it or by revoke-all still stops its tokens on
/// every replica.
#[test]
fn ending_a_session_whose_record_expired_stops_its_tokens_on_every_replica() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(
        &up,
        &redis,
        2,
        json!({"sessions": {"absolute_lifetime": "2s"}}),
    );
    let logins: Vec<Value> = ["alice", "bob", "{carol}", "alice"]
        .iter()
        .map(|u| rs[0].login(u))
        .collect();
    let access: Vec<String> = logins.iter().map(|t| s(t, "access_token")).collect();
    thread::sleep(Duration::from_millis(2500));
    for (t, sc) in access.iter().zip(&rs) {
        assert_eq!(
            sc.get(PRIVATE, Some(t)).status,
            200,
            "the token outlives its session's record"
        );
    }
    let r = rs[0].send(Request::post("/v1/auth/logout").bearer(&access[0]));
    assert_eq!(r.status, 204, "{}", r.describe());
    let own = format!("/v1/auth/sessions/{}", s(&logins[1], "session_id"));
    assert_error(
        &rs[0].send(Request::new("DELETE", &own).bearer(&access[1])),
        404,
        "not_found",
    );
    let r = rs[0].send(Request::post("/v1/auth/sessions/revoke-all").bearer(&access[2]));
    assert_eq!(r.status, 200, "{}", r.describe());
    // A logout with the refresh token alone: the session is gone, and so
    // are its tokens.
    let r = rs[0].send(
        Request::post("/v1/auth/logout")
            .json(&json!({"refresh_token": s(&logins[3], "refresh_token")})),
    );
    assert_eq!(r.status, 204, "{}", r.describe());
    let started = Instant::now();
    for t in &access {
        for sc in &rs {
            let took = time_until_revoked(sc, t, started);
            assert!(took <= PROPAGATION, "refused only after {took:?}");
        }
    }
}

#[test]
fn a_revocation_on_one_replica_is_rejected_on_the_others_within_a_second() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(&up, &redis, 3, json!({}));
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        let t = rs[0].login(["alice", "bob", "alice"][round]);
        let access = s(&t, "access_token");
        for sc in &rs {
            // Warm every replica's cache of verified tokens.
            assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200);
        }
        let sid = s(&t, "session_id");
        let started = Instant::now();
        let del =
            rs[0].send(Request::new("DELETE", &format!("/v1/auth/sessions/{sid}")).bearer(&access));
        assert_eq!(del.status, 204, "{}", del.describe());
        assert_error(&rs[0].get(PRIVATE, Some(&access)), 401, "session_revoked");
        for (i, sc) in rs.iter().enumerate().skip(1) {
            let took = time_until_revoked(sc, &access, started);
            eprintln!(
                "revocation propagation, round {round}, replica {i}: {:.1} ms",
                took.as_secs_f64() * 1000.0
            );
            worst = worst.max(took);
        }
    }
    eprintln!(
        "revocation propagation worst case: {:.1} ms",
        worst.as_secs_f64() * 1000.0
    );
    assert!(worst < PROPAGATION, "propagation took {worst:?}");
}

#[test]
fn a_reused_refresh_token_on_another_replica_revokes_the_session_everywhere() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(&up, &redis, 3, json!({"sessions": {"reuse_grace": "0s"}}));
    let t = rs[0].login("alice");
    let rotated = rs[1].refresh(&s(&t, "refresh_token"));
    assert_eq!(rotated.status, 200, "{}", rotated.describe());
    let new = rotated.json();
    let new_access = s(&new, "access_token");
    assert_eq!(rs[0].get(PRIVATE, Some(&new_access)).status, 200);
    // The used-up token comes back on a third replica: a thief.
    assert_error(
        &rs[2].refresh(&s(&t, "refresh_token")),
        401,
        "refresh_token_reused",
    );
    let started = Instant::now();
    for sc in &rs {
        let took = time_until_revoked(sc, &new_access, started);
        assert!(took < PROPAGATION, "{took:?}");
    }
    assert_error(
        &rs[0].refresh(&s(&new, "refresh_token")),
        401,
        "session_revoked",
    );
}

#[test]
fn twenty_concurrent_refreshes_split_across_replicas_rotate_once() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = Arc::new(replicas(&up, &redis, 2, json!({})));
    let t = rs[0].login("alice");
    let token = Arc::new(s(&t, "refresh_token"));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let (rs, token) = (rs.clone(), token.clone());
            thread::spawn(move || rs[i % 2].refresh(&token))
        })
        .collect();
    let answers: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut tokens = std::collections::HashSet::new();
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.describe());
        tokens.insert(s(&r.json(), "refresh_token"));
    }
    assert_eq!(
        tokens.len(),
        1,
        "every answer carries the one current refresh token"
    );
    let rotated: f64 = rs
        .iter()
        .map(|sc| sc.metric("sessiongate_refresh_total", &[("result", "rotated")]))
        .sum();
    let grace: f64 = rs
        .iter()
        .map(|sc| sc.metric("sessiongate_refresh_total", &[("result", "grace")]))
        .sum();
    assert_eq!((rotated, grace), (1.0, 19.0));
}

#[test]
fn a_redis_outage_is_served_from_memory_until_the_bound_then_recovered_from() {
    let (up, mut redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(
        &up,
        &redis,
        2,
        json!({"revocation": {"max_staleness": "3s"}}),
    );
    let t = rs[0].login("alice");
    let (access, refresh) = (s(&t, "access_token"), s(&t, "refresh_token"));
    // Persist what is there, so the restarted server still knows the session.
    assert!(redis.command(&["SAVE"]).starts_with("+OK"));
    redis.stop();
    let down = Instant::now();

    // Within the bound: valid tokens still pass; store routes answer 503 JSON.
    for sc in &rs {
        assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200, "{}", sc.logs());
    }
    let started = Instant::now();
    assert_error(&rs[1].refresh(&refresh), 503, "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a dead Redis must not hang requests"
    );
    let errors = rs[1].metric("sessiongate_store_errors_total", &[("backend", "redis")]);
    assert!(errors >= 1.0, "store errors counted: {errors}");
    assert_error(
        &rs[0].send(Request::get("/v1/auth/sessions").bearer(&access)),
        503,
        "store_unavailable",
    );
    // SPEC 7: still ready while the revocation list is fresh enough, so one
    // Redis failover does not empty every Service at once.
    for sc in &rs {
        assert_eq!(sc.admin_get("/readyz").status, 200, "{}", sc.logs());
    }

    // Past the bound: fail closed, and unready.
    let wait = Duration::from_millis(3600).saturating_sub(down.elapsed());
    thread::sleep(wait);
    for sc in &rs {
        assert_error(&sc.get(PRIVATE, Some(&access)), 503, "store_unavailable");
        assert_eq!(sc.admin_get("/readyz").status, 503, "{}", sc.logs());
        assert!(sc.metric("sessiongate_revocation_sync_staleness_seconds", &[]) > 3.0);
    }
    assert_eq!(
        rs[1].get("/public/x", None).status,
        200,
        "anonymous routes do not need Redis"
    );

    // Back: every replica recovers by itself, the session survived.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    for sc in &rs {
        while sc.admin_get("/readyz").status != 200 {
            assert!(Instant::now() < deadline, "not ready again\n{}", sc.logs());
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200);
    }
    let r = rs[1].refresh(&refresh);
    assert_eq!(
        r.status,
        200,
        "the token presented during the outage is still good: {}",
        r.describe()
    );
    // And broadcasts flow again (the subscription came back).
    let t2 = rs[0].login("bob");
    let access2 = s(&t2, "access_token");
    assert_eq!(rs[1].get(PRIVATE, Some(&access2)).status, 200);
    let started = Instant::now();
    let out = rs[0].send(Request::post("/v1/auth/logout").bearer(&access2));
    assert_eq!(out.status, 204, "{}", out.describe());
    assert!(time_until_revoked(&rs[1], &access2, started) < PROPAGATION);
}

#[test]
fn a_replica_whose_redis_is_down_at_start_is_not_ready_until_it_answers() {
    let (up, mut redis) = (Upstream::start(), RedisServer::start());
    redis.stop();
    let mut sc = SidecarConfig::new(&up.url(), redis_overrides(&redis, json!({}))).spawn_unready();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        if let Ok(r) = Request::get("/readyz").try_send(sc.admin_port()) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "admin listener never came up\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 503, "{}", r.describe());
    assert!(r.text().contains("not been synced"), "{}", r.text());
    // Not ready says nothing of the client listener: it may still be binding.
    let login =
        Request::post("/v1/auth/login").json(&json!({"username": "alice", "password": "pw"}));
    let r = loop {
        if let Ok(r) = login.try_send(sc.port()) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "client listener never came up\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_error(&r, 503, "store_unavailable");
    redis.restart();
    sc.wait_ready();
    let t = sc.login("alice");
    assert_eq!(sc.get(PRIVATE, Some(&s(&t, "access_token"))).status, 200);
}

#[test]
fn a_revocation_whose_broadcast_was_lost_arrives_with_the_periodic_resync() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = replicas(
        &up,
        &redis,
        1,
        json!({"revocation": {"resync_interval": "1s"}}),
    );
    let t = rs[0].login("alice");
    let access = s(&t, "access_token");
    assert_eq!(rs[0].get(PRIVATE, Some(&access)).status, 200);
    // Into the revocation log only, as if the PUBLISH had been lost.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let sid = s(&t, "session_id");
    assert!(redis
        .command(&["ZADD", "it:{rev}", &now_ms.to_string(), &sid])
        .starts_with(":1"));
    let took = time_until_revoked(&rs[0], &access, Instant::now());
    eprintln!(
        "revocation picked up by resync after {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(took < Duration::from_millis(2500), "{took:?}");
}
