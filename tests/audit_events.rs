//! The operator's view of security events, through the real binary on
//! SQLite and on a real redis-server: `GET /admin/v1/security-events`
//! (SPEC 9) and `sessiongate events` (SPEC 1), their filters, paging and
//! refusals.

mod common;

use std::collections::HashSet;

use common::redis_server::RedisServer;
use common::*;

const TOKEN: &str = "an-operator-token-of-forty-characters-00";

fn events(sc: &Sidecar, query: &str) -> Response {
    Request::new("GET", &format!("/admin/v1/security-events{query}"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send(sc.admin_port())
}

fn listed(r: &Response) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["events"].as_array().expect("events").clone()
}

/// alice logs in twice and revokes all; bob logs in once: events of both.
fn activity(sc: &Sidecar) {
    let a = sc.login("alice");
    sc.login("alice");
    sc.login("bob");
    let r = sc.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&s(&a, "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
}

fn filters_and_paging(sc: &Sidecar) {
    activity(sc);
    let all = listed(&events(sc, ""));
    let users: HashSet<&str> = all.iter().filter_map(|e| e["user_id"].as_str()).collect();
    assert_eq!(users, HashSet::from(["user-alice", "user-bob"]), "{all:?}");
    // Newest first.
    let ats: Vec<&str> = all.iter().filter_map(|e| e["at"].as_str()).collect();
    assert!(ats.windows(2).all(|w| w[0] >= w[1]), "{ats:?}");
    // One user, one type.
    let bob = listed(&events(sc, "?user_id=user-bob"));
    assert!(!bob.is_empty() && bob.iter().all(|e| e["user_id"] == "user-bob"));
    let revokes = listed(&events(sc, "?type=revoke_all"));
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert_eq!(revokes[0]["user_id"], "user-alice");
    assert_eq!(revokes[0]["by"], "user");
    // `since` in the future: nothing; far in the past: everything.
    assert!(listed(&events(sc, "?since=2999-01-01T00:00:00Z")).is_empty());
    assert_eq!(
        listed(&events(sc, "?since=2000-01-01T00:00:00%2B00:00")).len(),
        all.len()
    );
    // Paging one at a time walks the same events, each once.
    let mut walked = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let r = events(sc, &query);
        walked.extend(listed(&r));
        match r.json()["next"].as_str() {
            Some(next) => query = format!("?limit=1&before={next}"),
            None => break,
        }
        assert!(walked.len() <= all.len(), "paging does not end");
    }
    assert_eq!(walked, all);
    // A cursor of one filter does not continue another.
    let first = events(sc, "?limit=1");
    let next = s(&first.json(), "next");
    assert_error(
        &events(sc, &format!("?type=login&limit=1&before={next}")),
        400,
        "invalid_request",
    );
}

#[test]
fn an_operator_lists_filters_and_pages_every_users_events_on_sqlite() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"admin": {"token": TOKEN}}));
    filters_and_paging(&sc);
}

#[test]
fn an_operator_lists_filters_and_pages_every_users_events_on_redis() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(
        &up,
        json!({"admin": {"token": TOKEN},
               "store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "aud:"}}}),
    );
    filters_and_paging(&sc);
}

#[test]
fn hostile_event_queries_are_clear_400s_and_the_token_is_required() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"admin": {"token": TOKEN}}));
    for bad in [
        "?type=nope",
        "?since=yesterday",
        "?since=2026-13-01T00:00:00Z",
        "?limit=0",
        "?limit=100000",
        "?before=not-a-cursor",
        "?user_id=%zz",
        "?type=login&type=login",
        "?offset=3",
    ] {
        assert_error(&events(&sc, bad), 400, "invalid_request");
    }
    let r = Request::new("GET", "/admin/v1/security-events").send(sc.admin_port());
    assert_eq!(r.status, 401, "{}", r.describe());
    // A user's access token is not an admin token.
    let t = sc.login("alice");
    let r = Request::new("GET", "/admin/v1/security-events")
        .bearer(&s(&t, "access_token"))
        .send(sc.admin_port());
    assert_eq!(r.status, 401, "{}", r.describe());
}

fn events_cli(sc: &Sidecar, args: &[&str]) -> std::process::Output {
    let config = sc.cfg.path();
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().expect("utf-8 path")]);
    run_cli(&all, &[])
}

#[test]
fn the_events_command_reads_a_running_sqlite_sidecars_store() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    events_command(&sc);
}

#[test]
fn the_events_command_reads_a_running_redis_sidecars_store() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let sc = Sidecar::start(
        &up,
        json!({"store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "evcli:"}}}),
    );
    events_command(&sc);
}

fn events_command(sc: &Sidecar) {
    activity(sc);
    let out = events_cli(sc, &["--json", "--user", "user-alice"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = v["events"].as_array().expect("events");
    assert!(list.len() >= 3, "{v}");
    assert!(list.iter().all(|e| e["user_id"] == "user-alice"), "{v}");
    let out = events_cli(sc, &["--type", "revoke_all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("AT "), "{text}");
    assert!(
        text.contains("revoke_all") && text.contains("user-alice"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("1 events"), "{text}");
    for bad in [
        &["--type", "nope"][..],
        &["--since", "yesterday"],
        &["--limit", "0"],
    ] {
        let out = events_cli(sc, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}
