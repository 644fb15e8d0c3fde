//! Store promises beyond tests/store_contract.rs, in its style (one case, run
//! against every backend): user ids with braces and non-ASCII characters,
//! an unreachable Redis (errors within the bound, never a hang, recovery),
//! SQLite data surviving a reopen of the file, and a refresh on one Redis
//! server costing one round trip.

use std::any::Any;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::redis_server::RedisServer;
use sessiongate::store::redis::{RedisStore, Retention};
use sessiongate::store::sqlite::SqliteStore;
use sessiongate::store::{
    Activity, Lifetimes, RefreshOutcome, SecurityEvent, SessionRecord, SessionStore, StoreError,
};

type Fresh = (Arc<dyn SessionStore>, Box<dyn Any + Send>);

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_800_000_000_000;
const LIFETIMES: Lifetimes = Lifetimes {
    idle_ms: 24 * HOUR,
    absolute_ms: 7 * 24 * HOUR,
};

fn session(id: &str, user: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user_id: user.into(),
        claims: r#"{"name":"Zoë {x}"}"#.into(),
        created_at: NOW,
        last_active_at: NOW,
        ip: "2001:db8::1".into(),
        user_agent: "Mozilla/5.0 (Ünïcödé; {braces})".into(),
        generation: 0,
        kid: "k1".into(),
        rotated_at: 0,
        revoked_at: None,
    }
}

fn event(kind: &'static str, user: &str, at: i64) -> SecurityEvent {
    SecurityEvent {
        id: format!("{user}-{at}-{kind}"),
        kind,
        user_id: user.into(),
        session_id: "s".into(),
        ip: "192.0.2.1".into(),
        user_agent: "ua".into(),
        at,
        by: None,
        reason: None,
        scope: None,
    }
}

/// User ids that could break a key layout: braces (Redis hash tags), one
/// that spells another's encoded form, non-ASCII, separators, spaces.
const ODD_USERS: &[&str] = &[
    "{a}",
    "a}{b",
    "{",
    "}",
    "u:61",
    "{u:61}",
    "a",
    "用户-ü",
    "émile@example.com",
    "with space:and:colons",
    "tab\there",
];

async fn odd_user_ids_are_kept_apart(store: Arc<dyn SessionStore>) {
    for (i, user) in ODD_USERS.iter().enumerate() {
        let s = session(&format!("s{i}"), user);
        store.create(&s).await.unwrap();
        assert_eq!(store.get(&s.id).await.unwrap(), Some(s), "{user:?}");
        store
            .record_event(&event("login", user, NOW + i as i64))
            .await
            .unwrap();
    }
    for (i, user) in ODD_USERS.iter().enumerate() {
        let ids: Vec<String> = store
            .list_active(user, NOW, LIFETIMES, None, 200)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [format!("s{i}")], "sessions of {user:?}");
        let events = store.events_for_user(user, 10).await.unwrap();
        assert_eq!(events.len(), 1, "events of {user:?}: {events:?}");
        assert_eq!(events[0].user_id, *user);
    }
    let revoked = store.revoke_user("{a}", None, NOW + 1).await.unwrap();
    assert_eq!(revoked, ["s0"], "revoking {{a}} touched others");
    for (i, user) in ODD_USERS.iter().enumerate().skip(1) {
        assert_eq!(
            store
                .get(&format!("s{i}"))
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            None,
            "{user:?} was revoked with {{a}}"
        );
    }
    assert!(store
        .list_active("{a}", NOW, LIFETIMES, None, 200)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_active("nobody", NOW, LIFETIMES, None, 200)
        .await
        .unwrap()
        .is_empty());
}

fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("odd.db")).unwrap();
    (Arc::new(store), Box::new(dir))
}

fn redis_on(server: RedisServer, urls: usize, prefix: &str) -> Fresh {
    let config = common::redis_server::config(vec![server.url(); urls], prefix);
    let retention = Retention {
        lifetimes: LIFETIMES,
        events_ms: 30 * 24 * HOUR,
        revocations_ms: HOUR,
    };
    (
        Arc::new(RedisStore::open(&config, retention).unwrap()),
        Box::new(server),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_user_ids_on_sqlite() {
    let (store, _guard) = sqlite();
    odd_user_ids_are_kept_apart(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_user_ids_on_redis() {
    let (store, _guard) = redis_on(RedisServer::start(), 1, "odd:");
    odd_user_ids_are_kept_apart(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_user_ids_on_a_redis_cluster() {
    let (store, _guard) = redis_on(RedisServer::cluster(), 2, "odd:");
    odd_user_ids_are_kept_apart(store).await;
}

/// The README's bound: 1 s per store call including reconnection; a little
/// slack for a busy machine, far below anything that would pile requests up.
const CALL_BOUND: Duration = Duration::from_secs(3);

async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for 20 s with Redis down"));
    let took = started.elapsed();
    assert!(out.is_err(), "{what} succeeded with Redis down: {out:?}");
    assert!(took < CALL_BOUND, "{what} took {took:?} to fail");
}

/// Every call against a Redis that is gone.
async fn every_call_fails_in_time(store: &dyn SessionStore) {
    let activity = Activity {
        at: NOW,
        ip: "192.0.2.1".into(),
        user_agent: "ua".into(),
        kid: "k1".into(),
    };
    fails_in_time("ping", store.ping()).await;
    fails_in_time("create", store.create(&session("s2", "bob"))).await;
    fails_in_time("get", store.get("s1")).await;
    fails_in_time("refresh", store.refresh("s1", 0, &activity, LIFETIMES)).await;
    fails_in_time("revoke", store.revoke("s1", NOW)).await;
    fails_in_time("revoke_user", store.revoke_user("alice", None, NOW)).await;
    fails_in_time(
        "list_active",
        store.list_active("alice", NOW, LIFETIMES, None, 200),
    )
    .await;
    fails_in_time("revoked_since", store.revoked_since(0)).await;
    fails_in_time(
        "record_event",
        store.record_event(&event("login", "a", NOW)),
    )
    .await;
    fails_in_time("events_for_user", store.events_for_user("alice", 5)).await;
    fails_in_time("cleanup", store.cleanup(NOW, LIFETIMES, NOW, NOW)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_fails_every_call_within_the_bound_and_recovery_needs_no_reopen() {
    let mut server = RedisServer::start();
    let port = server.port;
    let config = common::redis_server::config(vec![server.url()], "down:");
    let retention = Retention {
        lifetimes: LIFETIMES,
        events_ms: HOUR,
        revocations_ms: HOUR,
    };
    let store = RedisStore::open(&config, retention).unwrap();
    store.create(&session("s1", "alice")).await.unwrap();
    server.stop();
    every_call_fails_in_time(&store).await;
    // Several callers at once: each bounded, none waits behind the others.
    let started = Instant::now();
    let store = Arc::new(store);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("s1").await.is_err() })
        })
        .collect();
    for c in calls {
        assert!(c.await.unwrap(), "a get succeeded with Redis down");
    }
    assert!(started.elapsed() < CALL_BOUND, "{:?}", started.elapsed());

    server.restart();
    assert_eq!(server.port, port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.create(&session("s3", "carol")).await.unwrap();
    assert!(store.get("s3").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answered_fails_every_call_within_the_bound() {
    // A free port nobody listens on: connection refused, again and again.
    let port = common::free_port();
    let config = common::redis_server::config(vec![format!("redis://127.0.0.1:{port}/")], "never:");
    let retention = Retention {
        lifetimes: LIFETIMES,
        events_ms: HOUR,
        revocations_ms: HOUR,
    };
    let store = RedisStore::open(&config, retention).expect("open does not connect");
    every_call_fails_in_time(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_data_survives_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let (rotated, revoked_at) = {
        let store = SqliteStore::open(&path).unwrap();
        for (id, user) in [("s1", "alice"), ("s2", "alice"), ("s3", "用户-ü")] {
            store.create(&session(id, user)).await.unwrap();
        }
        let activity = Activity {
            at: NOW + 5,
            ip: "198.51.100.9".into(),
            user_agent: "ua-2".into(),
            kid: "k2".into(),
        };
        let RefreshOutcome::Rotated { after: rotated, .. } =
            store.refresh("s1", 0, &activity, LIFETIMES).await.unwrap()
        else {
            panic!("the rotation must succeed");
        };
        assert!(store.revoke("s2", NOW + 7).await.unwrap());
        store
            .record_event(&event("new_ip", "alice", NOW + 5))
            .await
            .unwrap();
        store.flush().await.unwrap();
        (rotated, NOW + 7)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get("s1").await.unwrap(), Some(rotated));
    assert_eq!(
        store.get("s2").await.unwrap().unwrap().revoked_at,
        Some(revoked_at)
    );
    assert_eq!(
        store.get("s3").await.unwrap(),
        Some(session("s3", "用户-ü"))
    );
    assert_eq!(
        store.revoked_since(NOW).await.unwrap(),
        [("s2".to_string(), revoked_at)]
    );
    let kinds: Vec<&str> = store
        .events_for_user("alice", 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["new_ip"]);
    // The generation moved on across the reopen: the old one conflicts.
    let activity = Activity {
        at: NOW + 9,
        ip: "x".into(),
        user_agent: "y".into(),
        kid: "k1".into(),
    };
    assert!(matches!(
        store.refresh("s1", 0, &activity, LIFETIMES).await.unwrap(),
        RefreshOutcome::Unchanged(_)
    ));
}

/// A `MONITOR` connection: sees every command Redis runs, in order.
fn monitor(server: &RedisServer) -> BufReader<TcpStream> {
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
    let mut reader = BufReader::new(conn);
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert_eq!(ok, "+OK\r\n");
    reader
}

/// The commands clients sent since `monitor` started (not those a script ran),
/// up to a marker this sends.
fn client_commands(server: &RedisServer, monitor: &mut BufReader<TcpStream>) -> Vec<String> {
    server.command(&["ECHO", "end-of-test-window"]);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        assert!(monitor.read_line(&mut line).unwrap() > 0, "monitor closed");
        if line.contains("end-of-test-window") {
            return out;
        }
        // `+<time> [<db> <client address> | lua] "<command>" "<arg>" ...`
        let Some((source, rest)) = line.split_once("] ") else {
            continue;
        };
        if !source.ends_with(" lua") {
            out.push(rest.split('"').nth(1).unwrap_or_default().to_lowercase());
        }
    }
}

/// On one Redis server a refresh is one command: the rotation script reads,
/// checks, rotates and records the activity in the user's index (keyed by the
/// hex of an odd user id, as Rust builds it), with no read before it and no
/// index update after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_one_redis_server_is_one_round_trip() {
    let server = RedisServer::start();
    let config = common::redis_server::config(vec![server.url()], "rt:");
    let retention = Retention {
        lifetimes: LIFETIMES,
        events_ms: HOUR,
        revocations_ms: HOUR,
    };
    let store = RedisStore::open(&config, retention).unwrap();
    let user = "用户-{ü}";
    store.create(&session("s1", user)).await.unwrap();
    let at = |ms: i64| Activity {
        at: NOW + ms,
        ip: "192.0.2.7".into(),
        user_agent: "ua".into(),
        kid: "k1".into(),
    };
    // The first run of a script loads it (EVALSHA answered NOSCRIPT, then EVAL).
    let first = store.refresh("s1", 0, &at(1), LIFETIMES).await.unwrap();
    assert!(matches!(first, RefreshOutcome::Rotated { .. }), "{first:?}");
    let mut seen = monitor(&server);
    let second = store.refresh("s1", 1, &at(2), LIFETIMES).await.unwrap();
    assert!(
        matches!(second, RefreshOutcome::Rotated { .. }),
        "{second:?}"
    );
    assert_eq!(client_commands(&server, &mut seen), ["evalsha"]);
    let active = format!("rt:{{u:{}}}:active", hex::encode(user));
    assert_eq!(
        server.command(&["ZSCORE", &active, "s1"]),
        format!("${}\r\n{}\r\n", (NOW + 2).to_string().len(), NOW + 2)
    );
}
