//! The operator API (SPEC 9) through the real binary: off without a token,
//! the admin token checked, any user's sessions listed and revoked, hostile
//! ids and queries answered with clear JSON errors.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;

const TOKEN: &str = "an-operator-token-of-forty-characters-00";

fn with_token() -> Value {
    json!({"admin": {"token": TOKEN}})
}

fn admin(
    sc: &Sidecar,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut req = Request::new(method, path);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    req.send(sc.admin_port())
}

fn op(sc: &Sidecar, method: &str, path: &str) -> Response {
    admin(sc, method, path, Some(TOKEN), None)
}

/// SPEC 9's 401: `invalid_token`, challenged for the admin realm.
fn assert_admin_401(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "invalid_token", "{}", r.describe());
    let challenge = r.header("WWW-Authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(r#"Bearer realm="sessiongate-admin""#),
        "{challenge}"
    );
}

fn session_ids(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|x| s(x, "id"))
        .collect()
}

#[test]
fn without_a_token_the_operator_api_does_not_exist() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    for (method, path) in [
        ("GET", "/admin/v1/users/user-alice/sessions"),
        ("POST", "/admin/v1/users/user-alice/revoke-all"),
        ("DELETE", "/admin/v1/sessions/x"),
    ] {
        assert_error(
            &admin(&sc, method, path, Some(TOKEN), None),
            404,
            "not_found",
        );
    }
}

#[test]
fn the_admin_token_is_required_and_a_user_token_is_not_one() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, with_token());
    let user = s(&sc.login("alice"), "access_token");
    let path = "/admin/v1/users/user-alice/sessions";
    assert_admin_401(&admin(&sc, "GET", path, None, None));
    assert_admin_401(&admin(&sc, "GET", path, Some(&user), None));
    assert_admin_401(&admin(
        &sc,
        "GET",
        path,
        Some(&TOKEN[..TOKEN.len() - 1]),
        None,
    ));
    assert_admin_401(&admin(&sc, "GET", path, Some(&format!("{TOKEN}x")), None));
    let basic = Request::get(path)
        .header("Authorization", &format!("Basic {TOKEN}"))
        .send(sc.admin_port());
    assert_admin_401(&basic);
    // Unknown paths are only revealed to the operator.
    assert_admin_401(&admin(&sc, "GET", "/admin/v1/nothing", None, None));
    assert_error(&op(&sc, "GET", "/admin/v1/nothing"), 404, "not_found");
    assert_eq!(op(&sc, "GET", path).status, 200);
}

#[test]
fn an_operator_lists_and_revokes_any_users_sessions() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, with_token());
    let a1 = sc.login("alice");
    let a2 = sc.login("alice");
    let b = sc.login("bob");
    let r = op(&sc, "GET", "/admin/v1/users/user-alice/sessions");
    let mut ids = session_ids(&r);
    ids.sort();
    let mut want = vec![s(&a1, "session_id"), s(&a2, "session_id")];
    want.sort();
    assert_eq!(ids, want);
    for x in r.json()["sessions"].as_array().unwrap() {
        assert!(x.get("current").is_none(), "no `current` here: {x}");
        assert!(x["created_at"].is_string() && x["ip"].is_string(), "{x}");
    }
    assert!(r.json().get("next").is_none(), "{}", r.describe());
    assert_eq!(
        op(&sc, "GET", "/admin/v1/users/nobody/sessions").json(),
        json!({"sessions": []})
    );
    // More than a page: `next` leads on, and the pages add up.
    let first = op(&sc, "GET", "/admin/v1/users/user-alice/sessions?limit=1");
    let next = s(&first.json(), "next");
    let second = op(
        &sc,
        "GET",
        &format!("/admin/v1/users/user-alice/sessions?limit=1&before={next}"),
    );
    let mut paged = [session_ids(&first), session_ids(&second)].concat();
    paged.sort();
    assert_eq!(paged, want);

    // One session: at once, the rest untouched.
    let path = format!("/admin/v1/sessions/{}", s(&a1, "session_id"));
    let r = op(&sc, "DELETE", &path);
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_error(
        &sc.get(PRIVATE, Some(&s(&a1, "access_token"))),
        401,
        "session_revoked",
    );
    assert_error(
        &sc.refresh(&s(&a1, "refresh_token")),
        401,
        "session_revoked",
    );
    assert_eq!(sc.get(PRIVATE, Some(&s(&a2, "access_token"))).status, 200);
    assert_error(&op(&sc, "DELETE", &path), 404, "not_found");
    assert_error(
        &op(&sc, "DELETE", "/admin/v1/sessions/unknown"),
        404,
        "not_found",
    );

    // Every session of a user, with a reason.
    let r = admin(
        &sc,
        "POST",
        "/admin/v1/users/user-alice/revoke-all",
        Some(TOKEN),
        Some(r#"{"reason": "password_changed"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json(), json!({"revoked": 1}));
    assert_error(
        &sc.get(PRIVATE, Some(&s(&a2, "access_token"))),
        401,
        "session_revoked",
    );
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&b, "access_token"))).status,
        200,
        "bob untouched"
    );
    let r = op(&sc, "POST", "/admin/v1/users/nobody/revoke-all");
    assert_eq!(r.json(), json!({"revoked": 0}), "{}", r.describe());

    assert_eq!(
        sc.metric("sessiongate_sessions_revoked_total", &[("reason", "admin")]),
        2.0
    );
    assert!(sc.metric("sessiongate_http_requests_total", &[("route", "admin")]) >= 6.0);
    // The log is buffered: poll (bounded) for the line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sc.stdout_lines().iter().any(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|o| {
            o["target"] == "security"
                && o["type"] == "revoke_all"
                && o["by"] == "admin"
                && o["reason"] == "password_changed"
        })
    }) {
        assert!(
            Instant::now() < deadline,
            "no revoke_all event by admin\n{}",
            sc.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    for l in sc.stdout_lines() {
        assert!(!l.contains(TOKEN), "the admin token was logged: {l}");
    }
}

#[test]
fn hostile_ids_queries_and_bodies_get_clear_errors() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, with_token());
    let carol = sc.login("{carol}");
    // Ids are percent-decoded and may hold any character.
    assert_eq!(
        session_ids(&op(&sc, "GET", "/admin/v1/users/user-%7Bcarol%7D/sessions")),
        [s(&carol, "session_id")]
    );
    // An encoded traversal is just an id nobody has.
    assert_eq!(
        session_ids(&op(&sc, "GET", "/admin/v1/users/..%2F..%2Fetc/sessions")),
        Vec::<String>::new()
    );
    assert_error(
        &op(&sc, "GET", "/admin/v1/users/a/b/sessions"),
        404,
        "not_found",
    );
    assert_error(
        &op(&sc, "GET", "/admin/v1/users/%zz/sessions"),
        400,
        "invalid_request",
    );
    assert_error(
        &op(&sc, "GET", "/admin/v1/users/%FF/sessions"),
        400,
        "invalid_request",
    );
    for q in [
        "limit=0",
        "limit=100000",
        "limit=x",
        "before=garbage!",
        "before=AAAA",
        "x=1",
    ] {
        let r = op(
            &sc,
            "GET",
            &format!("/admin/v1/users/user-alice/sessions?{q}"),
        );
        assert_error(&r, 400, "invalid_request");
    }
    for body in [
        r#"{"reason": "Password Changed"}"#,
        r#"{"reason": ""}"#,
        r#"{"why": "x"}"#,
        "not json",
        // serde would read these as the struct's fields in order.
        r#"["x"]"#,
        r#"["password_changed"]"#,
        "[]",
    ] {
        let r = admin(
            &sc,
            "POST",
            "/admin/v1/users/user-alice/revoke-all",
            Some(TOKEN),
            Some(body),
        );
        assert_error(&r, 400, "invalid_request");
    }
    assert_error(
        &op(&sc, "GET", "/admin/v1/users/user-alice/revoke-all"),
        400,
        "invalid_request",
    );
    // Nothing was revoked by any of it.
    assert_eq!(
        sc.get(PRIVATE, Some(&s(&carol, "access_token"))).status,
        200
    );
}

#[test]
fn the_token_comes_from_a_file_and_a_short_one_is_a_config_error() {
    let up = Upstream::start();
    let cfg = SidecarConfig::new(&up.url(), json!({}));
    let file = cfg.write_file("admin-token", &format!("  {TOKEN}\n"));
    let mut cfg = cfg;
    yaml::deep_merge(&mut cfg.config, json!({"admin": {"token_file": file}}));
    let sc = cfg.spawn();
    assert_eq!(op(&sc, "GET", "/admin/v1/users/u/sessions").status, 200);

    let short = SidecarConfig::new(&up.url(), json!({"admin": {"token": "too-short"}}));
    let path = short.write();
    let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("admin.token"), "{text}");
    assert!(!text.contains("too-short"), "the token was printed: {text}");
}

#[test]
fn an_operator_revocation_on_one_redis_replica_is_refused_on_the_other_within_a_second() {
    let (up, redis) = (Upstream::start(), RedisServer::start());
    let on_redis = json!({
        "admin": {"token": TOKEN},
        "store": {"backend": "redis", "redis": {"url": redis.url(), "key_prefix": "op:"}},
    });
    let first = SidecarConfig::new(&up.url(), on_redis.clone());
    let second = SidecarConfig::new(&up.url(), on_redis);
    second.write_file("k1.pem", &first.key_pem());
    let (a, b) = (first.spawn(), second.spawn());
    let t = a.login("alice");
    let access = s(&t, "access_token");
    assert_eq!(b.get(PRIVATE, Some(&access)).status, 200);
    assert_eq!(
        session_ids(&op(&b, "GET", "/admin/v1/users/user-alice/sessions")),
        [s(&t, "session_id")]
    );
    let r = op(&a, "POST", "/admin/v1/users/user-alice/revoke-all");
    assert_eq!(r.json(), json!({"revoked": 1}), "{}", r.describe());
    let since = Instant::now();
    loop {
        let r = b.get(PRIVATE, Some(&access));
        if r.status == 401 {
            assert_error(&r, 401, "session_revoked");
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
