//! The security-event webhook (SPEC 11) against the real binary and a real
//! HTTP receiver: signed bodies with the event's fields, a retry with the same
//! id after a 500, `types` filtering, a dead receiver that never delays a
//! client, a full queue that drops its oldest events (those waiting for a
//! retry included), the delivery metric, and config errors.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use common::scripted::{Reply, Scripted, SeenRequest};
use common::*;

const SECRET: &str = "a-webhook-secret-of-forty-characters-000";
const DELIVERIES: &str = "sessiongate_webhook_deliveries_total";

fn hook(url: &str, extra: Value) -> Value {
    let mut webhook = json!({"url": url, "secret": SECRET});
    if let (Some(w), Some(e)) = (webhook.as_object_mut(), extra.as_object()) {
        w.extend(e.clone());
    }
    json!({"security_events": {"webhook": webhook}})
}

/// The receiver's check: the signature is HMAC-SHA256(SECRET, "<t>.<body>")
/// with a fresh `t`, and the body is JSON; that body.
fn verified(req: &SeenRequest) -> Value {
    let sig = req.header("X-Sessiongate-Signature").expect("a signature");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature format: {sig}"));
    let t: u64 = t.parse().expect("t is unix seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t.abs_diff(now) < 60, "t={t} is not now ({now})");
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&req.body);
    let expected = hmac::sign(&key, &signed);
    assert_eq!(v1, hex::encode(expected.as_ref()), "signature mismatch");
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&req.body).expect("a JSON body");
    assert_eq!(
        req.header("X-Sessiongate-Event-Id"),
        body["id"].as_str(),
        "{body}"
    );
    body
}

fn keys(v: &Value) -> HashSet<&str> {
    v.as_object().unwrap().keys().map(|k| k.as_str()).collect()
}

fn refresh_as(sc: &Sidecar, tok: &Value, agent: &str) -> Value {
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("User-Agent", agent)
            .json(&json!({"refresh_token": s(tok, "refresh_token")})),
    );
    assert_eq!(r.status, 200, "refresh: {}", r.describe());
    r.json()
}

/// Polls `/metrics` until `result` reaches `n` (bounded); the last value.
fn wait_deliveries(sc: &Sidecar, result: &str, n: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = sc.metric(DELIVERIES, &[("result", result)]);
        if v >= n || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Proves the body carries the event's fields (`by` only where it applies), is signed
/// with the secret, goes to the configured path, and never carries tokens or the secret.
#[test]
fn events_arrive_signed_with_their_fields() {
    let receiver = Scripted::start(|_| Reply::status(204));
    let up = Upstream::start();
    let url = format!("{}/hooks/security?source=sg", receiver.url());
    let sc = Sidecar::start(&up, hook(&url, json!({})));
    let tok = sc.login_with_agent("alice", "agent-A");
    let rotated = refresh_as(&sc, &tok, "agent-B"); // new_device
    let r = sc.send(
        Request::new(
            "DELETE",
            &format!("/v1/auth/sessions/{}", s(&tok, "session_id")),
        )
        .bearer(&s(&rotated, "access_token")),
    );
    assert!(r.status < 300, "revoke: {}", r.describe());
    receiver.wait_seen(2, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(300)); // a login event would have come by now
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let bodies: Vec<Value> = seen.iter().map(verified).collect();
    for req in &seen {
        assert_eq!(req.target, "/hooks/security?source=sg");
        let raw = String::from_utf8_lossy(&req.body);
        for secret in [
            s(&tok, "refresh_token"),
            s(&tok, "access_token"),
            s(&rotated, "refresh_token"),
            SECRET.to_owned(),
        ] {
            assert!(
                !raw.contains(&secret),
                "token material or secret sent: {raw}"
            );
        }
    }
    // The default types leave `login` out.
    assert!(bodies.iter().all(|b| b["type"] != "login"), "{bodies:?}");
    let base = [
        "id",
        "type",
        "at",
        "user_id",
        "session_id",
        "ip",
        "user_agent",
    ];
    let device = bodies
        .iter()
        .find(|b| b["type"] == "new_device")
        .expect("new_device");
    assert_eq!(keys(device), HashSet::from(base), "{device}");
    assert_eq!(device["user_id"], "user-alice");
    assert_eq!(device["session_id"], tok["session_id"]);
    assert_eq!(device["user_agent"], "agent-B");
    assert_eq!(device["ip"], "127.0.0.1");
    assert!(
        device["at"].as_str().is_some_and(|a| a.ends_with('Z')),
        "{device}"
    );
    let revoked = bodies
        .iter()
        .find(|b| b["type"] == "session_revoked")
        .expect("session_revoked");
    let mut with_by = HashSet::from(base);
    with_by.insert("by");
    assert_eq!(keys(revoked), with_by, "{revoked}");
    assert_eq!(revoked["by"], "user");
    assert_ne!(revoked["id"], device["id"]);
    assert!(wait_deliveries(&sc, "ok", 2.0, Duration::from_secs(5)) >= 2.0);
    for line in sc.stdout_lines() {
        assert!(!line.contains(SECRET), "the secret was logged: {line}");
    }
}

/// Proves a non-2xx answer is retried (after ~1 s) with the same event id and body.
#[test]
fn a_failed_delivery_is_retried_with_the_same_id() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let receiver = Scripted::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    });
    let up = Upstream::start();
    let sc = Sidecar::start(&up, hook(&receiver.url(), json!({"types": ["login"]})));
    sc.login("alice");
    let seen = receiver.wait_seen(2, Duration::from_secs(10));
    assert_eq!(
        seen[0].header("X-Sessiongate-Event-Id"),
        seen[1].header("X-Sessiongate-Event-Id")
    );
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(verified(&seen[1])["type"], "login");
    assert!(wait_deliveries(&sc, "ok", 1.0, Duration::from_secs(5)) >= 1.0);
    assert!(sc.metric(DELIVERIES, &[("result", "retried")]) >= 1.0);
    assert_eq!(sc.metric(DELIVERIES, &[("result", "failed")]), 0.0);
}

/// Proves `types` chooses what is sent: with `[login]`, a new_device event is not.
#[test]
fn only_the_configured_types_are_sent() {
    let receiver = Scripted::start(|_| Reply::status(200));
    let up = Upstream::start();
    let sc = Sidecar::start(&up, hook(&receiver.url(), json!({"types": ["login"]})));
    let tok = sc.login_with_agent("alice", "agent-A");
    refresh_as(&sc, &tok, "agent-B"); // new_device: recorded, not sent
    sc.login("bob");
    receiver.wait_seen(2, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(500));
    let types: Vec<Value> = receiver
        .seen()
        .iter()
        .map(|r| verified(r)["type"].clone())
        .collect();
    assert_eq!(types, ["login", "login"]);
    assert_eq!(
        sc.metric(
            "sessiongate_security_events_total",
            &[("type", "new_device")]
        ),
        1.0
    );
}

/// Proves a receiver that accepts but never answers delays no login or refresh, its
/// timeouts are counted as retries, and a full queue drops events and counts them.
#[test]
fn a_dead_receiver_never_delays_a_client() {
    // Connections complete in the kernel's backlog; nothing ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        hook(
            &url,
            json!({"types": ["login", "new_device"], "timeout": "2s", "queue": 2}),
        ),
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let tok = sc.login_with_agent("alice", "agent-A");
        refresh_as(&sc, &tok, "agent-B");
        slowest = slowest.max(started.elapsed());
    }
    // 20 events against a 2 s timeout: waiting on the receiver would take far longer.
    assert!(slowest < Duration::from_secs(1), "slowest: {slowest:?}");
    assert!(sc.metric(DELIVERIES, &[("result", "dropped")]) >= 1.0);
    assert!(wait_deliveries(&sc, "retried", 1.0, Duration::from_secs(10)) >= 1.0);
    assert_eq!(sc.metric(DELIVERIES, &[("result", "ok")]), 0.0);
    drop(silent);
}

/// Proves a full queue drops its oldest undelivered events, those waiting for a
/// retry included, and holds no more than `queue` of them: with `queue: 2` and a
/// receiver answering 500, of 8 logins only the last two are ever delivered once
/// it answers 200, and the other six are counted as dropped.
#[test]
fn a_full_queue_keeps_only_the_newest_events() {
    let healthy = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let (up_now, accepted) = (healthy.clone(), delivered.clone());
    let receiver = Scripted::start(move |req| {
        if !up_now.load(Ordering::SeqCst) {
            return Reply::status(500);
        }
        let body: Value = serde_json::from_slice(&req.body).expect("a JSON body");
        accepted.lock().unwrap().push(body["user_agent"].clone());
        Reply::status(200)
    });
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        hook(&receiver.url(), json!({"types": ["login"], "queue": 2})),
    );
    // The user agent tells the events apart: e1 is the oldest, e8 the newest.
    for i in 1..=8 {
        sc.login_with_agent("alice", &format!("e{i}"));
    }
    // Each first attempt meets the 500 within milliseconds, long before its 1 s
    // retry: all but the two newest are pushed out before the receiver recovers.
    let dropped = wait_deliveries(&sc, "dropped", 6.0, Duration::from_secs(5));
    healthy.store(true, Ordering::SeqCst);
    let ok = wait_deliveries(&sc, "ok", 2.0, Duration::from_secs(15));
    thread::sleep(Duration::from_millis(300)); // an older event would have come by now
    let mut got = delivered.lock().unwrap().clone();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("e7"), json!("e8")], "delivered");
    assert_eq!(dropped, 6.0, "dropped before the receiver recovered");
    assert_eq!(ok, 2.0);
    assert_eq!(sc.metric(DELIVERIES, &[("result", "dropped")]), 6.0);
    assert_eq!(sc.metric(DELIVERIES, &[("result", "failed")]), 0.0);
    assert!(sc.metric(DELIVERIES, &[("result", "retried")]) >= 2.0);
}

/// Proves the config is refused, naming the key, for a short or missing secret, a bad
/// url and an unknown type; and the short secret is not echoed.
#[test]
fn bad_webhook_settings_are_config_errors() {
    let up = Upstream::start();
    let cases = [
        (
            json!({"url": "http://127.0.0.1:9/h", "secret": "short-secret-of-31-characters-0"}),
            "security_events.webhook.secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h"}),
            "security_events.webhook.secret",
        ),
        (
            json!({"url": "ftp://127.0.0.1/h", "secret": SECRET}),
            "security_events.webhook.url",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/h", "secret": SECRET}),
            "security_events.webhook.url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "secret": SECRET, "types": ["login", "nope"]}),
            "security_events.webhook.types[1]",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "secret": SECRET, "queue": 0}),
            "security_events.webhook.queue",
        ),
    ];
    for (webhook, key) in cases {
        let cfg = SidecarConfig::new(
            &up.url(),
            json!({"security_events": {"webhook": webhook.clone()}}),
        );
        let path = cfg.write();
        let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{webhook}: {text}");
        assert!(text.contains(key), "{webhook}: expected {key} in {text}");
        assert!(!text.contains("short-secret-of"), "secret echoed: {text}");
        assert!(!text.contains(":pw@"), "url credentials echoed: {text}");
    }
    // A secret of exactly 32 bytes from the environment is accepted.
    let cfg = SidecarConfig::new(
        &up.url(),
        json!({"security_events": {"webhook": {"url": "https://127.0.0.1/h", "secret": "${SG_HOOK}"}}}),
    );
    let path = cfg.write();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        &[("SG_HOOK", &"x".repeat(32))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
