//! The Redis store over TLS (`rediss://`, issue 17 item 1), against a real
//! `redis-server --tls-port` whose certificate a test CA signed: the server
//! certificate is verified (an unknown CA is refused), and a client
//! certificate is presented when the server requires one (mTLS).

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use crate::common::tls::TestCa;
use crate::common::*;

/// A sidecar on `redis` over TLS with `tls` as `store.redis.tls`.
fn on_tls(up: &Upstream, redis: &RedisServer, tls: Value) -> SidecarConfig {
    SidecarConfig::new(
        &up.url(),
        json!({"store": {"backend": "redis",
                         "redis": {"url": redis.tls_url(), "key_prefix": "tls:", "tls": tls}}}),
    )
}

/// Writes `pem` into the sidecar's dir; its path.
fn file(cfg: &SidecarConfig, name: &str, pem: &str) -> String {
    cfg.write_file(name, pem)
}

/// Sets `store.redis.tls` (merged into what is there).
fn set_tls(cfg: &mut SidecarConfig, tls: Value) {
    yaml::deep_merge(&mut cfg.config, json!({"store": {"redis": {"tls": tls}}}));
}

/// The login, the refresh and a revocation all go through the store: each
/// works, and Redis holds the session (so the TLS link was used).
fn assert_store_works(sc: &Sidecar, redis: &RedisServer) {
    let t = sc.login("alice");
    let r = sc.refresh(&s(&t, "refresh_token"));
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), sc.logs());
    let keys = redis.command(&["KEYS", "tls:*"]);
    assert!(
        keys.contains(&s(&t, "session_id")),
        "no session in Redis: {keys}"
    );
    let access = s(&r.json(), "access_token");
    let out = sc.send(Request::post("/v1/auth/logout").bearer(&access));
    assert!(out.status < 300, "{}", out.describe());
    assert_error(&sc.get(PRIVATE, Some(&access)), 401, "session_revoked");
}

#[test]
fn a_server_certificate_from_the_configured_ca_is_trusted() {
    let (up, ca) = (Upstream::start(), TestCa::new("redis test CA"));
    let redis = RedisServer::tls(&ca, false);
    let mut cfg = on_tls(&up, &redis, json!({}));
    let ca_path = file(&cfg, "redis-ca.pem", &ca.pem);
    set_tls(&mut cfg, json!({"ca_file": ca_path}));
    let sc = cfg.spawn();
    assert_store_works(&sc, &redis);
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let (up, ca) = (Upstream::start(), TestCa::new("redis test CA"));
    let redis = RedisServer::tls(&ca, false);
    // Trusted: the system roots plus another CA, not the one that signed Redis's.
    let mut cfg = on_tls(&up, &redis, json!({}));
    let other = file(&cfg, "other-ca.pem", &TestCa::new("someone else").pem);
    set_tls(&mut cfg, json!({"ca_file": other}));
    let sc = cfg.spawn_unready();
    // Never ready, and a login fails closed instead of writing anywhere.
    std::thread::sleep(Duration::from_millis(1500));
    sc.wait_readyz(503, Duration::from_secs(2));
    let r = sc.login_response("alice", "pw");
    assert_error(&r, 503, "store_unavailable");
    let keys = redis.command(&["DBSIZE"]);
    assert!(keys.starts_with(":0"), "something was written: {keys}");
    // The reason is in the log, without the URL's secrets.
    let logs = sc.logs();
    assert!(
        logs.to_lowercase().contains("certificate") || logs.contains("UnknownIssuer"),
        "the refusal does not say why:\n{logs}"
    );
}

#[test]
fn without_a_ca_file_only_the_system_roots_are_trusted() {
    let (up, ca) = (Upstream::start(), TestCa::new("redis test CA"));
    let redis = RedisServer::tls(&ca, false);
    // A test CA is in no system store: `rediss://` alone must not connect.
    let sc = SidecarConfig::new(
        &up.url(),
        json!({"store": {"backend": "redis",
                         "redis": {"url": redis.tls_url(), "key_prefix": "tls:"}}}),
    )
    .spawn_unready();
    std::thread::sleep(Duration::from_millis(1500));
    sc.wait_readyz(503, Duration::from_secs(2));
    assert_error(&sc.login_response("alice", "pw"), 503, "store_unavailable");
}

#[test]
fn a_server_that_requires_client_certificates_accepts_the_configured_one_only() {
    let (up, ca) = (Upstream::start(), TestCa::new("redis test CA"));
    let redis = RedisServer::tls(&ca, true);

    // No client certificate: the handshake is refused by Redis.
    let mut cfg = on_tls(&up, &redis, json!({}));
    let ca_path = file(&cfg, "redis-ca.pem", &ca.pem);
    set_tls(&mut cfg, json!({"ca_file": ca_path}));
    let without = cfg.spawn_unready();
    std::thread::sleep(Duration::from_millis(1500));
    assert_error(
        &without.login_response("alice", "pw"),
        503,
        "store_unavailable",
    );

    // With one the CA signed: the store works.
    let mut cfg = on_tls(&up, &redis, json!({}));
    let client = ca.server_cert();
    let (ca_path, cert, key) = (
        file(&cfg, "redis-ca.pem", &ca.pem),
        file(&cfg, "client.crt", &client.cert_pem),
        file(&cfg, "client.key", &client.key_pem),
    );
    set_tls(
        &mut cfg,
        json!({"ca_file": ca_path, "cert_file": cert, "key_file": key}),
    );
    let with = cfg.spawn();
    assert_store_works(&with, &redis);
}

#[test]
fn revocations_reach_another_replica_over_tls() {
    let (up, ca) = (Upstream::start(), TestCa::new("redis test CA"));
    let redis = RedisServer::tls(&ca, false);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let rs = replicas(
        &up,
        json!({"store": {"backend": "redis",
                         "redis": {"url": redis.tls_url(), "key_prefix": "tls:",
                                   "tls": {"ca_file": ca_path}}}}),
        2,
    );
    let t = rs[0].login("alice");
    let access = s(&t, "access_token");
    assert_eq!(rs[1].get(PRIVATE, Some(&access)).status, 200);
    let r = rs[0].send(Request::post("/v1/auth/logout").bearer(&access));
    assert!(r.status < 300, "{}", r.describe());
    // SPEC 5: on every other replica within 1 s (the pub/sub link is TLS too).
    let took = time_until_revoked(&rs[1], &access, std::time::Instant::now());
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
}
