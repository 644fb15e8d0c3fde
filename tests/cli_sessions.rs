//! `sessiongate sessions list|revoke` (SPEC 1) against the store of a
//! running sidecar, on SQLite and on a real redis-server: the sidecar obeys a
//! revocation made by the CLI within a second.

mod common;

use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;

fn cli(sc: &Sidecar, args: &[&str]) -> Output {
    let config = sc.cfg.path();
    let mut all = vec!["sessions"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().expect("utf-8 path")]);
    run_cli(&all, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls until `access` is refused with `session_revoked`; fails after 1 s.
fn refused_within_a_second(sc: &Sidecar, access: &str) {
    let since = Instant::now();
    loop {
        let r = sc.get(PRIVATE, Some(access));
        if r.status == 401 {
            assert_error(&r, 401, "session_revoked");
            return;
        }
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "still accepted 1 s after the CLI revoked it\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn list_and_revoke(sc: &Sidecar) {
    let a1 = sc.login("alice");
    let a2 = sc.login("alice");
    let b = sc.login("bob");

    let out = cli(sc, &["list", "--user", "user-alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    for t in [&a1, &a2] {
        assert!(text.contains(&s(t, "session_id")), "{text}");
    }
    assert!(!text.contains(&s(&b, "session_id")), "{text}");
    assert!(text.contains("2 active sessions"), "{text}");

    let out = cli(sc, &["list", "--user", "user-alice", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sessions = listed["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{listed}");
    assert!(
        sessions.iter().all(|x| x.get("current").is_none()),
        "{listed}"
    );
    let out = cli(sc, &["list", "--user", "nobody", "--json"]);
    assert_eq!(stdout(&out).trim(), r#"{"sessions":[]}"#);

    // One session: refused by the running sidecar within a second.
    let out = cli(sc, &["revoke", "--session", &s(&a1, "session_id")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    refused_within_a_second(sc, &s(&a1, "access_token"));
    assert_eq!(sc.get(PRIVATE, Some(&s(&a2, "access_token"))).status, 200);
    let out = cli(sc, &["revoke", "--session", &s(&a1, "session_id")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "already revoked: {}",
        describe(&out)
    );
    let out = cli(sc, &["revoke", "--session", "no-such-session"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // Every session of a user, with a reason.
    let out = cli(
        sc,
        &[
            "revoke",
            "--user",
            "user-alice",
            "--reason",
            "password_changed",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("1 sessions revoked"),
        "{}",
        describe(&out)
    );
    refused_within_a_second(sc, &s(&a2, "access_token"));
    assert_eq!(sc.get(PRIVATE, Some(&s(&b, "access_token"))).status, 200);
    let out = cli(sc, &["revoke", "--user", "nobody"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("0 sessions revoked"),
        "{}",
        describe(&out)
    );
}

#[test]
fn the_cli_lists_and_revokes_sessions_of_a_running_sqlite_sidecar() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    list_and_revoke(&sc);
}

#[test]
fn the_cli_lists_and_revokes_sessions_of_a_running_redis_sidecar() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(
        &up,
        json!({"store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "cli:"}}}),
    );
    list_and_revoke(&sc);
}

#[test]
fn usage_mistakes_are_exit_2_and_an_unreachable_store_exit_1() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    for args in [
        vec!["revoke"],
        vec!["revoke", "--user", "u", "--session", "s"],
        vec!["revoke", "--user", "u", "--reason", "Not Valid"],
        vec!["revoke", "--session", "s", "--reason", "why"],
        vec!["list"],
    ] {
        let out = cli(&sc, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
    let mut redis = RedisServer::start();
    let on_redis = Sidecar::start(
        &up,
        json!({"store": {"backend": "redis", "redis": {"url": redis.url()}}}),
    );
    redis.stop();
    let started = Instant::now();
    let out = cli(&on_redis, &["list", "--user", "user-alice"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(10), "it hung");
}

#[test]
fn a_session_id_that_starts_with_a_hyphen_is_a_value_not_a_flag() {
    // Session ids are base64url: one in 64 starts with `-`.
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let out = cli(&sc, &["revoke", "--session", "-Zno-such-session"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such active session"),
        "{}",
        describe(&out)
    );
    let out = cli(&sc, &["list", "--user", "-user", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
