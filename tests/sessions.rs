//! The session routes (SPEC 4): login, refresh rotation, reuse detection and
//! its grace window, listing, revocation, logout, durability and secrecy.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::jwt;
use common::*;

const REUSE_EVENTS: &str = "sessiongate_security_events_total";

fn sessions_of(sc: &Sidecar, access: &str) -> Response {
    sc.send(Request::get("/v1/auth/sessions").bearer(access))
}

fn delete_session(sc: &Sidecar, access: &str, id: &str) -> Response {
    sc.send(Request::new("DELETE", &format!("/v1/auth/sessions/{id}")).bearer(access))
}

/// The session of `tok` is signed out: its access token is refused as revoked.
fn assert_access_revoked(sc: &Sidecar, tok: &Value) {
    assert_error(
        &sc.get(PRIVATE, Some(&s(tok, "access_token"))),
        401,
        "session_revoked",
    );
}

#[test]
fn login_answers_a_token_response_with_the_spec_claims() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"tokens": {"issuer": "sg-tests", "audience": "legacy", "access_ttl": "10m"}}),
    );
    let r = sc.login_response("alice", "pw");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.header("Content-Type").is_some_and(|c| c.contains("json")));
    assert!(
        r.header("X-Session-Subject").is_none() && r.header("X-Session-Claims").is_none(),
        "{}",
        r.describe()
    );
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let rt = s(&body, "refresh_token");
    assert!(
        jwt::b64_decode(&rt).len() >= 32,
        "refresh token under 256 bits"
    );
    let (header, claims) = jwt::decode(&s(&body, "access_token"));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "k1");
    assert_eq!(claims["iss"], "sg-tests");
    assert!(
        claims["aud"] == "legacy" || claims["aud"] == json!(["legacy"]),
        "{claims}"
    );
    assert_eq!(claims["sub"], "user-alice");
    assert_eq!(claims["sid"], body["session_id"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 600);
    assert!((iat - jwt::now()).abs() < 60);
    assert_eq!(claims["ext"], json!({"role": "admin"}));
    assert_eq!(
        up.requests_to("/login").len(),
        1,
        "login goes to the upstream's /login"
    );
}

#[test]
fn a_failed_login_passes_the_upstreams_401_through() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let r = sc.login_response("alice", "wrong");
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json(), json!({"error": "bad_credentials"}));
    assert_eq!(sc.metric("sessiongate_sessions_created_total", &[]), 0.0);
}

#[test]
fn refresh_rotates_both_tokens_of_the_same_session() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    let new = r.json();
    assert_eq!(new["session_id"], tok["session_id"]);
    assert_ne!(new["refresh_token"], tok["refresh_token"]);
    assert_ne!(new["access_token"], tok["access_token"]);
    assert_eq!(
        jwt::decode(&s(&new, "access_token")).1["sid"],
        tok["session_id"]
    );
    assert_eq!(sc.get(PRIVATE, Some(&s(&new, "access_token"))).status, 200);
}

#[test]
fn refresh_without_a_token_or_with_bad_json_is_400_invalid_request() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    assert_error(
        &sc.send(Request::post("/v1/auth/refresh").json(&json!({}))),
        400,
        "invalid_request",
    );
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("Content-Type", "application/json")
            .body("{not json"),
    );
    assert_error(&r, 400, "invalid_request");
}

/// A body is a JSON object: serde would read `["<token>"]` as
/// `{"refresh_token": "<token>"}`, and `[]`/`[true]` as revoke-all's options.
#[test]
fn a_json_array_is_not_a_body() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let other = sc.login("alice");
    let refresh = s(&tok, "refresh_token");
    let array = |path: &str, body: Value| {
        Request::post(path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    };
    let r = sc.send(array("/v1/auth/refresh", json!([refresh])));
    assert_error(&r, 400, "invalid_request");
    let r = sc.send(array("/v1/auth/logout", json!([refresh])));
    assert_error(&r, 400, "invalid_request");
    for body in [json!([]), json!([true])] {
        let r =
            sc.send(array("/v1/auth/sessions/revoke-all", body).bearer(&s(&other, "access_token")));
        assert_error(&r, 400, "invalid_request");
    }
    // None of it acted: both sessions live, and the refresh token was not used.
    assert_eq!(sc.get(PRIVATE, Some(&s(&tok, "access_token"))).status, 200);
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&other, "access_token"))).status,
        200
    );
    assert_eq!(sc.refresh(&refresh).status, 200);
}

#[test]
fn an_unknown_refresh_token_is_401_invalid_refresh_token() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    assert_error(
        &sc.refresh(&jwt::b64(&[1u8; 32])),
        401,
        "invalid_refresh_token",
    );
    let mut raw = jwt::b64_decode(&s(&tok, "refresh_token"));
    let last = raw.len() - 1;
    raw[last] ^= 1;
    assert_error(&sc.refresh(&jwt::b64(&raw)), 401, "invalid_refresh_token");
}

#[test]
fn a_reused_refresh_token_after_the_grace_window_revokes_the_session() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"reuse_grace": "1s"}}));
    let tok = sc.login("alice");
    let before = sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]);
    let new = sc.refresh(&s(&tok, "refresh_token")).json();
    let rotated = std::time::Instant::now();
    let access = s(&new, "access_token");
    assert_eq!(sc.get(PRIVATE, Some(&access)).status, 200);
    // Inside the window the old token is answered with the current one; poll
    // it until the window closes instead of sleeping past it.
    let r = loop {
        let r = sc.refresh(&s(&tok, "refresh_token"));
        if r.status != 200 {
            break r;
        }
        assert_eq!(r.json()["refresh_token"], new["refresh_token"]);
        assert!(
            rotated.elapsed() < Duration::from_secs(3),
            "a 1 s grace window still open after {:?}",
            rotated.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        rotated.elapsed() >= Duration::from_millis(900),
        "the 1 s grace window closed after {:?}",
        rotated.elapsed()
    );
    assert_error(&r, 401, "refresh_token_reused");
    assert_eq!(
        sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]),
        before + 1.0
    );
    assert_error(&sc.get(PRIVATE, Some(&access)), 401, "session_revoked");
    assert_error(
        &sc.refresh(&s(&new, "refresh_token")),
        401,
        "session_revoked",
    );
}

#[test]
fn two_refreshes_inside_the_grace_window_get_the_same_refresh_token() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"reuse_grace": "10s"}}));
    let tok = sc.login("alice");
    let before = sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]);
    let a = sc.refresh(&s(&tok, "refresh_token"));
    let b = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(b.status, 200, "{}", b.describe());
    let (a, b) = (a.json(), b.json());
    assert_eq!(
        a["refresh_token"], b["refresh_token"],
        "SPEC 4.3: the session's current refresh token"
    );
    assert_eq!(a["session_id"], tok["session_id"]);
    assert_eq!(sc.get(PRIVATE, Some(&s(&a, "access_token"))).status, 200);
    assert_eq!(sc.get(PRIVATE, Some(&s(&b, "access_token"))).status, 200);
    assert_eq!(
        sc.refresh(&s(&b, "refresh_token")).status,
        200,
        "the shared token still rotates"
    );
    assert_eq!(
        sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]),
        before
    );
}

/// Fires `n` refreshes with one token at once; their responses.
fn concurrent_refreshes(sc: &Sidecar, token: &str, n: usize) -> Vec<Response> {
    let barrier = Arc::new(Barrier::new(n));
    let port = sc.port();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            let req = Request::post("/v1/auth/refresh").json(&json!({"refresh_token": token}));
            std::thread::spawn(move || {
                barrier.wait();
                req.send(port)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("refresh thread"))
        .collect()
}

#[test]
fn twenty_concurrent_refreshes_in_grace_mode_all_get_one_identical_refresh_token() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"reuse_grace": "10s"}}));
    let tok = sc.login("alice");
    let answers = concurrent_refreshes(&sc, &s(&tok, "refresh_token"), 20);
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let tokens: HashSet<String> = answers
        .iter()
        .map(|r| s(&r.json(), "refresh_token"))
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "more than one live refresh token: {tokens:?}"
    );
    let current = tokens.into_iter().next().unwrap();
    assert_eq!(sc.refresh(&current).status, 200);
    assert_eq!(
        sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]),
        0.0
    );
}

#[test]
fn twenty_concurrent_refreshes_in_strict_mode_rotate_exactly_once() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"reuse_grace": "0s"}}));
    let tok = sc.login("alice");
    let answers = concurrent_refreshes(&sc, &s(&tok, "refresh_token"), 20);
    let ok: Vec<&Response> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        answers.iter().map(Response::describe).collect::<Vec<_>>()
    );
    let winner = ok[0].json();
    assert_ne!(winner["refresh_token"], tok["refresh_token"]);
    let mut reused = 0;
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 401, "{}", r.describe());
        let code = r.error_code();
        assert!(
            code == "refresh_token_reused" || code == "session_revoked",
            "{}",
            r.describe()
        );
        reused += usize::from(code == "refresh_token_reused");
    }
    // 19 presentations of a rotated token: the first one seen after the
    // rotation is reuse (SPEC 4.3), which revokes the whole session.
    assert!(reused >= 1, "no loser was told refresh_token_reused");
    assert!(
        sc.metric(REUSE_EVENTS, &[("type", "refresh_token_reuse")]) >= 1.0,
        "no refresh_token_reuse event"
    );
    assert_access_revoked(&sc, &winner);
    assert_access_revoked(&sc, &tok);
    assert_error(
        &sc.refresh(&s(&winner, "refresh_token")),
        401,
        "session_revoked",
    );
}

#[test]
fn sessions_are_listed_newest_first_with_current_and_no_token_material() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let t1 = sc.login_with_agent("alice", "ua-one");
    // "Newest first" needs a later creation time: wait for the clock to pass
    // the first session's `created_at` (milliseconds) instead of sleeping.
    let first = sessions_of(&sc, &s(&t1, "access_token")).json();
    let created = first["sessions"][0]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while sessiongate::time::rfc3339_ms(sessiongate::time::unix_now_ms()) <= created {
        assert!(std::time::Instant::now() < deadline, "the clock is stuck");
        std::thread::yield_now();
    }
    let t2 = sc.login_with_agent("alice", "ua-two");
    let _other = sc.login("bob");
    let r = sessions_of(&sc, &s(&t2, "access_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    for secret in [&t1, &t2]
        .iter()
        .flat_map(|t| [s(t, "refresh_token"), s(t, "access_token")])
    {
        assert!(
            !r.text().contains(&secret),
            "a token appears in the listing"
        );
    }
    let list = r.json()["sessions"].as_array().cloned().expect("sessions");
    let ids: Vec<&Value> = list.iter().map(|x| &x["id"]).collect();
    assert_eq!(ids, [&t2["session_id"], &t1["session_id"]], "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[0]["user_agent"], "ua-two");
    assert_eq!(list[1]["user_agent"], "ua-one");
    for x in &list {
        assert_eq!(x["ip"], "127.0.0.1");
        for f in ["created_at", "last_active_at", "expires_at"] {
            let v = x[f].as_str().unwrap_or_default();
            assert!(
                v.len() >= 20 && v.as_bytes()[10] == b'T',
                "{f} is not RFC 3339: {v:?}"
            );
        }
    }
}

#[test]
fn deleting_another_users_session_is_404_and_it_keeps_working() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let alice = sc.login("alice");
    let bob = sc.login("bob");
    let r = delete_session(&sc, &s(&alice, "access_token"), &s(&bob, "session_id"));
    assert_error(&r, 404, "not_found");
    let unknown = delete_session(&sc, &s(&alice, "access_token"), "AAAAAAAAAAAAAAAAAAAAAA");
    assert_error(&unknown, 404, "not_found");
    assert_eq!(
        r.json(),
        unknown.json(),
        "the IDOR answer differs from an unknown id's"
    );
    assert_eq!(sc.get(PRIVATE, Some(&s(&bob, "access_token"))).status, 200);
    assert_eq!(sc.refresh(&s(&bob, "refresh_token")).status, 200);
}

#[test]
fn deleting_ones_own_other_session_revokes_it_at_once() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let t1 = sc.login("alice");
    let t2 = sc.login("alice");
    assert_eq!(sc.get(PRIVATE, Some(&s(&t1, "access_token"))).status, 200);
    let r = delete_session(&sc, &s(&t2, "access_token"), &s(&t1, "session_id"));
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_access_revoked(&sc, &t1);
    assert_eq!(sc.get(PRIVATE, Some(&s(&t2, "access_token"))).status, 200);
}

#[test]
fn revoke_all_revokes_every_session_of_the_caller_only() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let mine: Vec<Value> = (0..3).map(|_| sc.login("alice")).collect();
    let bob = sc.login("bob");
    let r =
        sc.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&s(&mine[2], "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["revoked"], 3);
    for t in &mine {
        assert_access_revoked(&sc, t);
        assert_error(&sc.refresh(&s(t, "refresh_token")), 401, "session_revoked");
    }
    assert_eq!(sc.get(PRIVATE, Some(&s(&bob, "access_token"))).status, 200);
}

#[test]
fn revoke_all_with_keep_current_spares_the_calling_session() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let t1 = sc.login("alice");
    let t2 = sc.login("alice");
    let r = sc.send(
        Request::post("/v1/auth/sessions/revoke-all")
            .bearer(&s(&t2, "access_token"))
            .json(&json!({"keep_current": true})),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["revoked"], 1);
    assert_access_revoked(&sc, &t1);
    assert_eq!(sc.get(PRIVATE, Some(&s(&t2, "access_token"))).status, 200);
}

#[test]
fn logout_with_the_bearer_token_revokes_the_session() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let r = sc.send(Request::post("/v1/auth/logout").bearer(&s(&tok, "access_token")));
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_access_revoked(&sc, &tok);
    assert_error(
        &sc.refresh(&s(&tok, "refresh_token")),
        401,
        "session_revoked",
    );
}

#[test]
fn logout_with_the_refresh_token_revokes_the_session() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let r = sc.send(
        Request::post("/v1/auth/logout").json(&json!({"refresh_token": s(&tok, "refresh_token")})),
    );
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_access_revoked(&sc, &tok);
}

#[test]
fn sessions_and_revocations_survive_a_restart() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let a = sc.login("alice");
    let b = sc.login("alice");
    assert_eq!(
        delete_session(&sc, &s(&a, "access_token"), &s(&b, "session_id")).status,
        204
    );
    sc.restart();
    let r = sc.refresh(&s(&a, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["session_id"], a["session_id"]);
    assert_eq!(sc.get(PRIVATE, Some(&s(&a, "access_token"))).status, 200);
    assert_access_revoked(&sc, &b);
    assert_error(&sc.refresh(&s(&b, "refresh_token")), 401, "session_revoked");
}

#[test]
fn an_idle_session_expires() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"idle_timeout": "2s"}}));
    let tok = sc.login("alice");
    let logged_in = std::time::Instant::now();
    sc.wait_session_idle(&tok);
    assert!(
        logged_in.elapsed() >= Duration::from_millis(1900),
        "a 2 s idle timeout hit after {:?}",
        logged_in.elapsed()
    );
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_error(&r, 401, "session_expired");
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("Your session has expired"), "{message}");
}

#[test]
fn refresh_tokens_never_reach_the_logs_or_the_database_file() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let new = sc.refresh(&s(&tok, "refresh_token")).json();
    let _ = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(sc.stop(), Some(0));
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(sc.dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("sessiongate.db") {
            stored.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!stored.is_empty(), "no SQLite file found");
    let logs = sc.stdout() + &sc.logs();
    for t in [s(&tok, "refresh_token"), s(&new, "refresh_token")] {
        assert!(!logs.contains(&t), "a refresh token is in the logs");
        assert!(
            common::client::find(&stored, t.as_bytes()).is_none(),
            "a refresh token is in the database"
        );
        let raw = jwt::b64_decode(&t);
        for window in raw.windows(24) {
            assert!(
                common::client::find(&stored, window).is_none(),
                "refresh-token bytes are in the database"
            );
        }
    }
}

#[test]
fn too_many_logins_are_429_with_retry_after() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 2}}}),
    );
    assert_eq!(sc.login_response("alice", "pw").status, 200);
    assert_eq!(sc.login_response("alice", "pw").status, 200);
    let r = sc.login_response("alice", "pw");
    assert_error(&r, 429, "rate_limited");
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {}", r.describe()));
    assert!(retry >= 1, "{retry}");
    assert_eq!(
        up.requests_to("/login").len(),
        2,
        "a limited login reached the upstream"
    );
}

#[test]
fn a_token_older_than_the_immediate_predecessor_is_reuse_even_inside_the_grace_window() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"sessions": {"reuse_grace": "10s"}}));
    let t0 = sc.login("alice");
    let t1 = sc.refresh(&s(&t0, "refresh_token")).json();
    let t2 = sc.refresh(&s(&t1, "refresh_token")).json();
    assert_ne!(t1["refresh_token"], t2["refresh_token"]);
    assert_error(
        &sc.refresh(&s(&t0, "refresh_token")),
        401,
        "refresh_token_reused",
    );
    assert_access_revoked(&sc, &t2);
    assert_eq!(
        sc.metric("sessiongate_sessions_revoked_total", &[("reason", "reuse")]),
        1.0
    );
}

#[test]
fn a_refresh_from_another_user_agent_records_a_new_device_event() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login_with_agent("alice", "device-one");
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("User-Agent", "device-two")
            .json(&json!({"refresh_token": s(&tok, "refresh_token")})),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sc.metric(REUSE_EVENTS, &[("type", "new_device")]), 1.0);
    assert_eq!(sc.metric(REUSE_EVENTS, &[("type", "new_ip")]), 0.0);
    let list = sessions_of(&sc, &s(&r.json(), "access_token")).json();
    assert_eq!(list["sessions"][0]["user_agent"], "device-two");
}

#[test]
fn an_oversized_login_body_is_413_and_not_forwarded() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let body = json!({"username": "alice", "password": "pw", "pad": "x".repeat(20 * 1024)});
    let r = sc.send(Request::post("/v1/auth/login").json(&body));
    assert_error(&r, 413, "payload_too_large");
    assert!(up.requests_to("/login").is_empty());
}

#[test]
fn with_login_omitted_the_login_path_is_an_ordinary_route() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"login": null}));
    let r = sc.login_response("alice", "pw");
    assert_error(&r, 401, "missing_token");
    assert!(up.requests_to("/login").is_empty() && up.requests_to("/v1/auth/login").is_empty());
    assert_eq!(sc.metric("sessiongate_sessions_created_total", &[]), 0.0);
}

// ---- refresh cookie mode ----------------------------------------------------

fn cookie_sidecar(up: &Upstream) -> Sidecar {
    Sidecar::start(
        up,
        json!({"sessions": {"refresh_cookie": {"name": "sg_refresh", "path": "/v1/auth", "secure": true, "same_site": "Strict"}}}),
    )
}

/// The `sg_refresh` value of a Set-Cookie header, checking its attributes.
fn refresh_cookie(r: &Response) -> String {
    let set = r
        .header("Set-Cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {}", r.describe()));
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/v1/auth"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    set.strip_prefix("sg_refresh=")
        .and_then(|v| v.split(';').next())
        .expect("sg_refresh=...")
        .to_owned()
}

#[test]
fn cookie_mode_sets_an_http_only_refresh_cookie_and_refreshes_from_it() {
    let up = Upstream::start();
    let sc = cookie_sidecar(&up);
    let login = sc.login_response("alice", "pw");
    assert_eq!(login.status, 200, "{}", login.describe());
    let cookie = refresh_cookie(&login);
    assert_eq!(cookie, s(&login.json(), "refresh_token"));
    let origin = format!("http://127.0.0.1:{}", sc.port());
    let r = sc.send(
        Request::post("/v1/auth/refresh")
            .header("Cookie", &format!("sg_refresh={cookie}"))
            .header("Origin", &origin),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rotated = refresh_cookie(&r);
    assert_ne!(rotated, cookie, "the cookie carries the rotated token");
    let out = sc.send(
        Request::post("/v1/auth/logout")
            .header("Cookie", &format!("sg_refresh={rotated}"))
            .header("Origin", &origin),
    );
    assert_eq!(out.status, 204, "{}", out.describe());
    assert!(
        out.header("Set-Cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "logout clears the cookie"
    );
    assert_error(&sc.refresh(&rotated), 401, "session_revoked");
}

#[test]
fn the_refresh_cookie_never_reaches_the_upstream_other_cookies_do() {
    let up = Upstream::start();
    let sc = cookie_sidecar(&up);
    let login = sc.login_response("alice", "pw");
    let cookie = refresh_cookie(&login);
    let access = s(&login.json(), "access_token");
    // A proxied request whose cookies include ours (path "/" cookies, or a
    // client that sends everything), on two Cookie lines.
    let r = sc.send(
        Request::get(PRIVATE)
            .bearer(&access)
            .header(
                "Cookie",
                &format!("theme=dark; sg_refresh={cookie}; lang=en"),
            )
            .header("Cookie", &format!("sg_refresh={cookie}")),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to(PRIVATE).pop().expect("forwarded");
    assert_eq!(rec.header_values("Cookie"), ["theme=dark; lang=en"]);
    // A second login from the same browser carries the cookie (Path=/v1/auth):
    // the legacy /login does not get it.
    let again = sc.send(
        Request::post("/v1/auth/login")
            .header("Content-Type", "application/json")
            .header("Cookie", &format!("sg_refresh={cookie}"))
            .body(r#"{"username":"alice","password":"pw"}"#),
    );
    assert_eq!(again.status, 200, "{}", again.describe());
    let rec = up.requests_to("/login").pop().expect("login forwarded");
    assert!(rec.header("Cookie").is_none(), "{rec:?}");
    assert!(
        !rec.headers.iter().any(|(_, v)| v.contains(&cookie)),
        "{rec:?}"
    );
}

#[test]
fn a_cookie_refresh_from_another_origin_or_none_is_refused() {
    let up = Upstream::start();
    let sc = cookie_sidecar(&up);
    let cookie = refresh_cookie(&sc.login_response("alice", "pw"));
    for origin in [Some("https://evil.example"), None] {
        let mut req =
            Request::post("/v1/auth/refresh").header("Cookie", &format!("sg_refresh={cookie}"));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        assert_error(&sc.send(req), 403, "invalid_request");
    }
    // The token was not used up by the refused attempts.
    assert_eq!(sc.refresh(&cookie).status, 200);
}
