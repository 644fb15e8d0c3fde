//! SPEC 10, black-box against the real binary: the legacy upstream ends
//! sessions by setting `X-Session-Revoke` on its response to an
//! authenticated proxied request.

mod common;

use common::scripted::{Reply, Scripted, SeenRequest};
use common::*;

fn upstream() -> Scripted {
    Scripted::start(|req: &SeenRequest| match req.path() {
        "/login" => Reply::status(200)
            .header("X-Session-Subject", "user-alice")
            .header("X-Session-Revoke", "all")
            .body("{}"),
        p => match p.strip_prefix("/revoke/") {
            Some(value) => Reply::status(200)
                .header("X-Session-Revoke", &value.replace("%20", " "))
                .body("done"),
            None => Reply::status(200).body("ok"),
        },
    })
}

fn sidecar(up: &Scripted, overrides: Value) -> Sidecar {
    config(up, overrides).spawn()
}

fn config(up: &Scripted, overrides: Value) -> SidecarConfig {
    let mut cfg = overrides;
    cfg["routes"] = json!([
        {"prefix": "/revoke/anon", "auth": "none"},
        {"prefix": "/", "auth": "required"},
    ]);
    SidecarConfig::new(&up.url(), cfg)
}

fn token(sc: &Sidecar) -> String {
    s(&sc.login("alice"), "access_token")
}

fn get(sc: &Sidecar, path: &str, token: &str) -> Response {
    sc.send(Request::get(path).bearer(token))
}

fn upstream_revoke_scopes(sc: &Sidecar, token: &str) -> Vec<String> {
    let r = get(sc, "/v1/auth/security-events", token);
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "upstream_revoke")
        .map(|e| e["scope"].as_str().unwrap_or("-").to_owned())
        .collect()
}

// Proves: `current` ends exactly the calling session, before the response
// reaches the client, and the header is not shown to the client.
#[test]
fn current_ends_the_calling_session_only() {
    let up = upstream();
    let sc = sidecar(&up, json!({}));
    let (a, b) = (token(&sc), token(&sc));
    let r = get(&sc, "/revoke/current", &a);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.header("X-Session-Revoke").is_none(), "{}", r.describe());
    assert_error(&get(&sc, "/api/x", &a), 401, "session_revoked");
    assert_eq!(get(&sc, "/api/x", &b).status, 200);
    assert_eq!(upstream_revoke_scopes(&sc, &b), ["current"]);
}

// Proves: `others` keeps the calling session and ends the rest.
#[test]
fn others_keeps_the_caller_and_ends_the_rest() {
    let up = upstream();
    let sc = sidecar(&up, json!({}));
    let (a, b) = (token(&sc), token(&sc));
    assert_eq!(get(&sc, "/revoke/OTHERS", &a).status, 200);
    assert_eq!(get(&sc, "/api/x", &a).status, 200);
    assert_error(&get(&sc, "/api/x", &b), 401, "session_revoked");
    assert_eq!(upstream_revoke_scopes(&sc, &a), ["others"]);
}

// Proves: `all` ends every session of the user, the caller's included.
#[test]
fn all_ends_every_session_of_the_user() {
    let up = upstream();
    let sc = sidecar(&up, json!({}));
    let (a, b) = (token(&sc), token(&sc));
    assert_eq!(get(&sc, "/revoke/all", &a).status, 200);
    assert_error(&get(&sc, "/api/x", &a), 401, "session_revoked");
    assert_error(&get(&sc, "/api/x", &b), 401, "session_revoked");
    let c = token(&sc);
    assert_eq!(upstream_revoke_scopes(&sc, &c), ["all"]);
}

// Proves: a list, an unknown value, an unauthenticated request and the
// login call are ignored, and the header is removed all the same.
#[test]
fn odd_values_anonymous_requests_and_login_are_ignored() {
    let up = upstream();
    let sc = sidecar(&up, json!({}));
    // The login upstream answered with `all`: not honoured on login.
    let a = token(&sc);
    for path in [
        "/revoke/current,%20all",
        "/revoke/everything",
        "/revoke/anon",
    ] {
        let r = get(&sc, path, &a);
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        assert!(r.header("X-Session-Revoke").is_none(), "{path}");
    }
    let r = sc.send(Request::get("/revoke/anon"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.header("X-Session-Revoke").is_none());
    assert_eq!(get(&sc, "/api/x", &a).status, 200, "still signed in");
    assert!(upstream_revoke_scopes(&sc, &a).is_empty());
}

// Proves: `upstream.revoke_header: null` turns the feature off: the header
// is an ordinary one and revokes nothing.
#[test]
fn a_null_revoke_header_disables_it() {
    let up = upstream();
    // (`null` in the harness's overrides deletes a key: set it afterwards.)
    let mut cfg = config(&up, json!({}));
    cfg.config["upstream"]["revoke_header"] = Value::Null;
    let sc = cfg.spawn();
    let a = token(&sc);
    let r = get(&sc, "/revoke/all", &a);
    assert_eq!(r.header("X-Session-Revoke"), Some("all"));
    assert_eq!(get(&sc, "/api/x", &a).status, 200);
}

// Proves: a custom header name is honoured and the default one is not.
#[test]
fn a_custom_revoke_header_name_is_used() {
    let up = Scripted::start(|req: &SeenRequest| match req.path() {
        "/login" => Reply::status(200)
            .header("X-Session-Subject", "user-alice")
            .body("{}"),
        "/bye" => Reply::status(200).header("X-App-Logout", "current"),
        _ => Reply::status(200).header("X-Session-Revoke", "current"),
    });
    let sc = sidecar(&up, json!({"upstream": {"revoke_header": "X-App-Logout"}}));
    let a = token(&sc);
    assert_eq!(get(&sc, "/api/x", &a).status, 200);
    assert_eq!(
        get(&sc, "/api/y", &a).status,
        200,
        "the default name does nothing"
    );
    assert_eq!(get(&sc, "/bye", &a).status, 200);
    assert_error(&get(&sc, "/api/x", &a), 401, "session_revoked");
}

// Proves: a revocation the store cannot commit is never reported as done:
// the client gets 503 store_unavailable instead of the upstream's answer.
#[test]
fn a_revocation_the_store_cannot_commit_is_503_not_the_upstreams_answer() {
    let up = upstream();
    let mut redis = common::redis_server::RedisServer::start();
    let sc = sidecar(
        &up,
        json!({"store": {"backend": "redis", "redis": {"url": redis.url()}},
               "revocation": {"max_staleness": "60s"}}),
    );
    let a = token(&sc);
    assert_eq!(get(&sc, "/api/x", &a).status, 200);
    redis.stop();
    let r = get(&sc, "/revoke/all", &a);
    assert_error(&r, 503, "store_unavailable");
    assert_ne!(r.text(), "done", "the upstream's answer went out");
}
