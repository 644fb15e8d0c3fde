//! Rate limits shared by replicas on one real `redis-server` (issue 17 item 4,
//! SPEC 2 `rate_limits`): one bucket per route and client IP for all of them,
//! refilled by the server's clock, and each replica's own bucket while Redis
//! is unreachable.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::redis_server::RedisServer;
use crate::common::*;

const FALLBACKS: &str = "sessiongate_rate_limit_fallbacks_total";
const WARNING: &str = "shared rate-limit buckets unavailable";

fn redis_overrides(url: Value, extra: Value) -> Value {
    let mut v = json!({
        "store": {"backend": "redis", "redis": {"url": url, "key_prefix": "it:"}},
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
    });
    yaml::deep_merge(&mut v, extra);
    v
}

/// Two sidecars on one Redis (`url`: one URL, or a list for cluster mode),
/// the second signing with the first one's key.
fn two_replicas(up: &Upstream, url: Value, extra: Value) -> [Sidecar; 2] {
    let first = SidecarConfig::new(&up.url(), redis_overrides(url.clone(), extra.clone()));
    let pem = first.key_pem();
    let second = SidecarConfig::new(&up.url(), redis_overrides(url, extra));
    second.write_file("k1.pem", &pem);
    [first.spawn(), second.spawn()]
}

fn login_from(sc: &Sidecar, ip: &str) -> Response {
    sc.send(
        Request::post("/v1/auth/login")
            .header("X-Forwarded-For", ip)
            .json(&json!({"username": "alice", "password": "pw"})),
    )
}

fn refresh_from(sc: &Sidecar, token: &str, ip: &str) -> Response {
    sc.send(
        Request::post("/v1/auth/refresh")
            .header("X-Forwarded-For", ip)
            .json(&json!({"refresh_token": token})),
    )
}

/// Asserts 429 `rate_limited`; its Retry-After seconds.
fn assert_limited(r: &Response) -> u64 {
    assert_error(r, 429, "rate_limited");
    r.header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no integer Retry-After: {}", r.describe()))
}

/// The remaining TTL of a Redis key in ms (negative: no key or no TTL).
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    let answer = redis.command(&["PTTL", key]);
    answer
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("PTTL answered {answer:?}"))
}

/// Waits (up to 2 s: logs are flushed every 100 ms) until `sc` logged `text`.
fn wait_for_log(sc: &Sidecar, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sc.logs().contains(text) {
        assert!(
            Instant::now() < deadline,
            "never logged {text:?}\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// Proves the burst is for all replicas together: the old per-process buckets
// let each replica pass 3, so the 4th login (the 2nd on replica 1) passed.
#[test]
fn a_login_burst_is_shared_by_two_replicas() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = two_replicas(
        &up,
        json!(redis.url()),
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 3}}}),
    );
    for i in 0..3 {
        let r = login_from(&rs[i % 2], "203.0.113.9");
        assert_eq!(r.status, 200, "login {i}: {}", r.describe());
    }
    for sc in &rs {
        let retry = assert_limited(&login_from(sc, "203.0.113.9"));
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // Another IP has a bucket of its own.
    assert_eq!(login_from(&rs[1], "203.0.113.10").status, 200);
    // The bucket expires once it would be full again: 3 tokens at 1/min.
    let ttl = pttl(&redis, "it:{rl:login:203.0.113.9}");
    assert!((1..=180_000).contains(&ttl), "PTTL {ttl}");
    for sc in &rs {
        assert_eq!(sc.metric(FALLBACKS, &[("route", "login")]), 0.0);
    }
}

// Proves refreshes from one (IPv6) client draw from one bucket across
// replicas, and that a denied refresh used up no token.
#[test]
fn a_refresh_burst_is_shared_by_two_replicas_for_an_ipv6_client() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = two_replicas(
        &up,
        json!(redis.url()),
        json!({"rate_limits": {"refresh": {"per_minute": 1, "burst": 2}}}),
    );
    let ip = "2001:db8::7";
    let mut token = s(&login_from(&rs[0], ip).json(), "refresh_token");
    for sc in &rs {
        let r = refresh_from(sc, &token, ip);
        assert_eq!(r.status, 200, "{}", r.describe());
        token = s(&r.json(), "refresh_token");
    }
    for sc in &rs {
        assert_limited(&refresh_from(sc, &token, ip));
    }
    assert!(pttl(&redis, "it:{rl:refresh:2001:db8::7}") > 0);
    let r = refresh_from(&rs[1], &token, "2001:db8::8");
    assert_eq!(r.status, 200, "{}", r.describe());
}

// Proves the shared bucket refills with time (1 token/s here): a client
// limited on one replica gets one more login a second later on the other.
#[test]
fn the_shared_bucket_refills_at_the_configured_rate() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let rs = two_replicas(
        &up,
        json!(redis.url()),
        json!({"rate_limits": {"login": {"per_minute": 60, "burst": 2}}}),
    );
    let ip = "198.51.100.4";
    assert_eq!(login_from(&rs[0], ip).status, 200);
    assert_eq!(login_from(&rs[1], ip).status, 200);
    assert_eq!(assert_limited(&login_from(&rs[0], ip)), 1);
    thread::sleep(Duration::from_millis(1100));
    let r = login_from(&rs[1], ip);
    assert_eq!(r.status, 200, "refilled: {}", r.describe());
    assert_limited(&login_from(&rs[0], ip));
}

// Proves the script runs in cluster mode (URL list) on a Redis Cluster: the
// bucket's key has a hash tag of its own.
#[test]
fn shared_buckets_work_on_a_redis_cluster() {
    let (up, redis) = (Upstream::start(), RedisServer::cluster());
    let rs = two_replicas(
        &up,
        json!([redis.url(), redis.url()]),
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 2}}}),
    );
    let ip = "192.0.2.33";
    assert_eq!(login_from(&rs[0], ip).status, 200);
    assert_eq!(login_from(&rs[1], ip).status, 200);
    assert_limited(&login_from(&rs[0], ip));
    assert_eq!(rs[0].metric(FALLBACKS, &[("route", "login")]), 0.0);
}

// Proves a dead Redis does not open the limit: each replica limits with its
// own bucket (counted, warned about once), fast; and shares again when back.
#[test]
fn while_redis_is_down_each_replica_limits_with_its_own_bucket() {
    let (up, mut redis) = (Upstream::start(), RedisServer::start());
    let rs = two_replicas(
        &up,
        json!(redis.url()),
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 2}}}),
    );
    let ip = "198.51.100.77";
    assert_eq!(login_from(&rs[0], ip).status, 200);
    redis.stop();

    // The local bucket is full: `burst` attempts get through the limit (and
    // then fail on the store), the next is limited.
    for _ in 0..2 {
        let started = Instant::now();
        let r = login_from(&rs[0], ip);
        assert_error(&r, 503, "store_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a dead Redis hangs the login"
        );
    }
    let started = Instant::now();
    let retry = assert_limited(&login_from(&rs[0], ip));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the check waited {:?} for a dead Redis",
        started.elapsed()
    );
    assert_eq!(rs[0].metric(FALLBACKS, &[("route", "login")]), 3.0);
    // The other replica has its own bucket, full.
    assert_error(&login_from(&rs[1], ip), 503, "store_unavailable");
    assert_eq!(rs[1].metric(FALLBACKS, &[("route", "login")]), 1.0);
    wait_for_log(&rs[0], WARNING);
    let warnings = rs[0].logs().matches(WARNING).count();
    assert_eq!(warnings, 1, "one warning per outage\n{}", rs[0].logs());

    // Back: the shared bucket (empty after the restart) answers again, so
    // the login passes although this replica's own bucket is used up.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = login_from(&rs[0], ip);
        if r.status == 200 {
            break;
        }
        assert!(
            matches!(r.status, 429 | 503),
            "while reconnecting: {}",
            r.describe()
        );
        assert!(
            Instant::now() < deadline,
            "never shared again\n{}",
            rs[0].logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
    wait_for_log(&rs[0], "shared rate-limit buckets answer again");
}

// Proves a config reload keeps the shared count (the local buckets start
// full after one) and applies the new rate: 2/min waits 30 s, not 60.
#[test]
fn a_reload_keeps_the_shared_count_and_applies_the_new_rate() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let mut rs = two_replicas(
        &up,
        json!(redis.url()),
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 2}}}),
    );
    let ip = "192.0.2.200";
    assert_eq!(login_from(&rs[0], ip).status, 200);
    assert_eq!(login_from(&rs[1], ip).status, 200);
    assert!(assert_limited(&login_from(&rs[0], ip)) > 30);

    let sc = &mut rs[0];
    sc.cfg.config["rate_limits"]["login"]["per_minute"] = json!(2);
    // A new file renamed over the old one, as editors and Kubernetes do.
    let tmp = sc.dir().join(".sessiongate.yaml.new");
    std::fs::write(&tmp, yaml::to_yaml(&sc.cfg.config)).expect("write the config");
    std::fs::rename(&tmp, sc.cfg.path()).expect("rename it into place");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sc.metric("sessiongate_config_reloads_total", &[("result", "ok")]) < 1.0 {
        assert!(Instant::now() < deadline, "no reload\n{}", sc.logs());
        thread::sleep(Duration::from_millis(50));
    }
    let retry = assert_limited(&login_from(&rs[0], ip));
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
}
