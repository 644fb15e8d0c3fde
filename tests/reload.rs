//! Hot reload (SPEC 1): SIGHUP and changes to the config file or a file it
//! names take effect without a restart or a dropped connection; an invalid
//! change keeps the running config and is counted. Each test runs the real
//! binary and changes real files under it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::client::{connect, read_response};
use common::jwt::decode;
use common::tls::{https_get, TestCa};
use common::*;

const RELOADS: &str = "sessiongate_config_reloads_total";
/// SPEC 1 asks for 5 s; the margin is for a busy CI machine.
const WITHIN: Duration = Duration::from_secs(10);

/// Waits until `sessiongate_config_reloads_total{result}` reaches `n`; panics
/// with the logs after [`WITHIN`].
fn wait_reloads(sc: &Sidecar, result: &str, n: f64) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let seen = sc.metric(RELOADS, &[("result", result)]);
        if seen >= n {
            assert_eq!(seen, n, "more {result} reloads than changes\n{}", sc.logs());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{RELOADS}{{result={result}}} stayed at {seen}, expected {n}\n{}",
            sc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replaces the running sidecar's config file with `text` the way editors
/// and Kubernetes do (a new file renamed over the old one), so no reload
/// can read it half-written and count an extra refusal.
fn replace_config(sc: &Sidecar, text: &str) {
    let tmp = sc.dir().join(".sessiongate.yaml.new");
    std::fs::write(&tmp, text).expect("write the new config");
    std::fs::rename(&tmp, sc.cfg.path()).expect("rename it into place");
}

/// Rewrites the running sidecar's config file from `sc.cfg.config`.
fn rewrite(sc: &Sidecar) {
    replace_config(sc, &common::yaml::to_yaml(&sc.cfg.config));
}

/// Waits until the logs contain every one of `needles` (they are flushed
/// every 100 ms); panics with them after [`WITHIN`].
fn wait_logged(sc: &Sidecar, needles: &[&str], why: &str) {
    let deadline = Instant::now() + WITHIN;
    while !needles.iter().all(|n| sc.logs().contains(n)) {
        assert!(Instant::now() < deadline, "{why}\n{}", sc.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sighup(sc: &Sidecar) {
    let ok = Command::new("kill")
        .args(["-HUP", &sc.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP failed");
}

fn kid(token: &str) -> String {
    decode(token).0["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn key_entry(sc: &Sidecar, kid: &str) -> Value {
    let file = sc
        .cfg
        .write_file(&format!("{kid}.pem"), &keygen("EdDSA", kid));
    json!({"kid": kid, "alg": "EdDSA", "private_key_file": file})
}

#[test]
fn keys_rotate_on_a_config_change_without_dropping_a_connection() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let old = s(&sc.login("alice"), "access_token");
    assert_eq!(kid(&old), "k1");

    // A kept-alive client connection, open across the reloads.
    let mut conn = connect(sc.port());
    let on_conn = |conn: &mut std::net::TcpStream, token: &str| {
        let req = Request::get(PRIVATE)
            .bearer(token)
            .header("Connection", "keep-alive");
        conn.write_all(&req.to_bytes(0))
            .expect("write on the kept connection");
        read_response(conn, Vec::new()).expect("an answer on the kept connection")
    };
    assert_eq!(on_conn(&mut conn, &old).status, 200);

    // k2 signs from now on; k1 still verifies.
    let k1 = sc.cfg.config["tokens"]["keys"][0].clone();
    let k2 = key_entry(&sc, "k2");
    sc.cfg.config["tokens"]["keys"] = json!([k2, k1]);
    rewrite(&sc);
    wait_reloads(&sc, "ok", 1.0);
    let new = s(&sc.login("bob"), "access_token");
    assert_eq!(kid(&new), "k2", "the reloaded first key signs");
    assert_eq!(
        on_conn(&mut conn, &new).status,
        200,
        "new key, old connection"
    );
    assert_eq!(on_conn(&mut conn, &old).status, 200, "k1 still verifies");
    let jwks = sc.get("/.well-known/jwks.json", None).json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");

    // k1 retired: its tokens are refused at once, on the same connection too.
    sc.cfg.config["tokens"]["keys"] = json!([k2]);
    rewrite(&sc);
    wait_reloads(&sc, "ok", 2.0);
    let refused = on_conn(&mut conn, &old);
    assert_error(&refused, 401, "invalid_token");
    assert_eq!(on_conn(&mut conn, &new).status, 200);
    assert_eq!(sc.metric(RELOADS, &[("result", "error")]), 0.0);
    assert_eq!(sc.stop(), Some(0));
}

#[test]
fn an_invalid_change_keeps_the_running_config_and_is_counted() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let token = s(&sc.login("alice"), "access_token");

    // A key file that does not exist: refused, named by its key path.
    let good = sc.cfg.config.clone();
    let mut bad = good.clone();
    bad["tokens"]["keys"][0]["private_key_file"] = json!(sc.dir().join("gone.pem"));
    replace_config(&sc, &common::yaml::to_yaml(&bad));
    wait_reloads(&sc, "error", 1.0);
    wait_logged(
        &sc,
        &["tokens.keys[0].private_key_file"],
        "the problem's key path is logged",
    );
    assert_eq!(
        sc.get(PRIVATE, Some(&token)).status,
        200,
        "the old keys stay"
    );
    let last_ok = "sessiongate_config_last_reload_successful";
    assert_eq!(sc.metric(last_ok, &[]), 0.0, "the next restart would fail");
    assert_eq!(s(&sc.login("bob"), "token_type"), "Bearer");

    // A YAML syntax error: refused too.
    replace_config(&sc, "upstream: [unclosed\n");
    wait_reloads(&sc, "error", 2.0);
    assert_eq!(sc.get(PRIVATE, Some(&token)).status, 200);

    // The same file again is no new change; fixing it reloads.
    replace_config(&sc, &common::yaml::to_yaml(&good));
    wait_reloads(&sc, "ok", 1.0);
    assert_eq!(sc.metric(RELOADS, &[("result", "error")]), 2.0);
    assert_eq!(sc.metric(last_ok, &[]), 1.0);
    assert_eq!(sc.get(PRIVATE, Some(&token)).status, 200);
}

/// Proves a key file that is there but does not parse (the keys are built
/// outside the config module) still refuses the reload at its key path and
/// keeps the running keys.
#[test]
fn a_key_file_that_holds_no_key_refuses_the_reload() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let token = s(&sc.login("alice"), "access_token");
    let not_a_key = sc.dir().join("not-a-key.pem");
    std::fs::write(&not_a_key, "this is no PEM\n").expect("write");
    let mut bad = sc.cfg.config.clone();
    bad["tokens"]["keys"][0]["private_key_file"] = json!(not_a_key);
    replace_config(&sc, &common::yaml::to_yaml(&bad));
    wait_logged(
        &sc,
        &[
            "tokens.keys[0].private_key_file",
            "not-a-key.pem: not a PEM file",
        ],
        "the unparsable key's path is logged",
    );
    assert_eq!(sc.metric(RELOADS, &[("result", "ok")]), 0.0);
    assert_eq!(
        sc.get(PRIVATE, Some(&token)).status,
        200,
        "the old keys stay"
    );
    assert_eq!(sc.stop(), Some(0));
}

#[test]
fn sighup_reloads_and_does_not_stop_the_process() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    sighup(&sc);
    wait_reloads(&sc, "ok", 1.0);
    assert_eq!(sc.get("/public/still-here", None).status, 200);
    // A change SIGHUP applies: the identity header's name and a route.
    sc.cfg.config["identity_headers"] = json!({"user_id": "X-Reloaded-User"});
    sc.cfg.config["routes"] = json!([
        {"prefix": "/open/", "auth": "none"},
        {"prefix": "/", "auth": "required"},
    ]);
    rewrite(&sc);
    sighup(&sc);
    let deadline = Instant::now() + WITHIN;
    while sc.get("/open/x", None).status != 200 {
        assert!(Instant::now() < deadline, "the new route never applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = s(&sc.login("alice"), "access_token");
    assert_eq!(sc.get("/api/who", Some(&token)).status, 200);
    let seen = up
        .wait_for(Duration::from_secs(5), |r| r.path == "/api/who")
        .expect("forwarded");
    assert_eq!(
        seen.header("x-reloaded-user").as_deref(),
        Some("user-alice")
    );
    assert_eq!(seen.header("x-auth-user-id"), None);
    assert_eq!(sc.get("/public/now-private", None).status, 401);
    assert_eq!(sc.stop(), Some(0), "SIGTERM still drains and exits 0");
}

#[test]
fn a_renewed_tls_certificate_is_served_to_new_connections() {
    let up = Upstream::start();
    let (first, second) = (TestCa::new("first CA"), TestCa::new("second CA"));
    let cert = first.server_cert();
    let mut cfg = SidecarConfig::new(&up.url(), json!({}));
    let cert_file = cfg.write_file("tls.crt", &cert.cert_pem);
    let key_file = cfg.write_file("tls.key", &cert.key_pem);
    cfg.config["server"]["tls"] = json!({"cert_file": cert_file, "key_file": key_file});
    let sc = cfg.spawn();
    assert!(https_get(sc.port(), &first.pem, "/public/a").is_ok());
    assert!(https_get(sc.port(), &second.pem, "/public/a").is_err());

    // cert-manager renews: the key and the certificate are replaced.
    let renewed = second.server_cert();
    sc.cfg.write_file("tls.key", &renewed.key_pem);
    sc.cfg.write_file("tls.crt", &renewed.cert_pem);
    let deadline = Instant::now() + WITHIN;
    while https_get(sc.port(), &second.pem, "/public/b").is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is never served\n{}",
            sc.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = https_get(sc.port(), &second.pem, "/public/c").expect("HTTPS");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        https_get(sc.port(), &first.pem, "/public/d").is_err(),
        "the old one is gone"
    );
}

/// Lays `files` out as Kubernetes mounts a Secret: `<dir>/<name>` ->
/// `..data/<name>`, `..data` -> a timestamped directory, swapped atomically.
fn mount_secret(dir: &Path, version: &str, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let target = dir.join(version);
    std::fs::create_dir_all(&target).expect("mkdir");
    for (name, content) in files {
        std::fs::write(target.join(name), content).expect("write");
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).expect("symlink");
        }
    }
    let tmp = dir.join("..data_tmp");
    symlink(version, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
}

#[test]
fn a_kubernetes_secret_update_rotates_the_admin_token() {
    let up = Upstream::start();
    let mut cfg = SidecarConfig::new(&up.url(), json!({}));
    let secret = cfg.dir.path().join("secret");
    let (first, second) = ("a".repeat(40), "b".repeat(40));
    mount_secret(&secret, "..2026_12_01_a", &[("admin-token", &first)]);
    cfg.config["admin"] = json!({"token_file": secret.join("admin-token")});
    let sc = cfg.spawn();
    let events = |token: &str| {
        Request::get("/admin/v1/security-events")
            .bearer(token)
            .send(sc.admin_port())
            .status
    };
    assert_eq!(events(&first), 200);

    mount_secret(&secret, "..2026_12_01_b", &[("admin-token", &second)]);
    wait_reloads(&sc, "ok", 1.0);
    assert_eq!(events(&second), 200, "the new token works");
    assert_eq!(events(&first), 401, "the old token is refused");
}

#[test]
fn what_needs_a_restart_is_logged_and_kept_while_the_rest_applies() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let old_port = sc.port();
    let pending = "sessiongate_config_restart_pending";
    assert_eq!(sc.metric(pending, &[]), 0.0, "nothing pending at start");
    let elsewhere = free_port();
    sc.cfg.config["server"]["listen"] = json!(format!("127.0.0.1:{elsewhere}"));
    sc.cfg.config["routes"] = json!([{"prefix": "/", "auth": "none"}]);
    rewrite(&sc);
    wait_reloads(&sc, "ok", 1.0);
    wait_logged(
        &sc,
        &["server.listen", "next restart"],
        "the ignored change is named",
    );
    // Still listening where it started, not on the new address...
    assert_eq!(
        Request::get("/x").send(old_port).status,
        200,
        "and the routes applied"
    );
    assert!(Request::get("/x").try_send(elsewhere).is_err());
    assert_eq!(sc.metric(pending, &[]), 1.0, "a restart is due");
    // Back to the running value: nothing pending any more.
    sc.cfg.config["server"]["listen"] = json!(format!("127.0.0.1:{old_port}"));
    rewrite(&sc);
    wait_reloads(&sc, "ok", 2.0);
    assert_eq!(sc.metric(pending, &[]), 0.0, "the change was undone");
    assert_eq!(sc.stop(), Some(0));
}

/// Proves a reload points the webhook at a new receiver and a removed
/// webhook sends nothing more.
#[test]
fn the_webhook_follows_the_config() {
    use common::scripted::{Reply, Scripted};
    let (first, second) = (
        Scripted::start(|_| Reply::status(200)),
        Scripted::start(|_| Reply::status(200)),
    );
    let hook = |url: String| json!({"url": url, "secret": "s".repeat(40), "types": ["login"]});
    let up = Upstream::start();
    let mut sc = Sidecar::start(
        &up,
        json!({"security_events": {"webhook": hook(first.url())}}),
    );
    sc.login("alice");
    first.wait_seen(1, WITHIN);

    sc.cfg.config["security_events"]["webhook"] = hook(second.url());
    rewrite(&sc);
    wait_reloads(&sc, "ok", 1.0);
    sc.login("bob");
    let seen = second.wait_seen(1, WITHIN);
    assert!(String::from_utf8_lossy(&seen[0].body).contains("user-bob"));

    sc.cfg.config["security_events"]["webhook"] = Value::Null;
    rewrite(&sc);
    wait_reloads(&sc, "ok", 2.0);
    sc.login("alice");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(first.seen().len(), 1, "the old receiver got nothing more");
    assert_eq!(second.seen().len(), 1, "a removed webhook sends nothing");
}
