//! The command line (SPEC 1) and the config file (SPEC 2): `check`, `run`
//! on bad configs, `${VAR}` expansion, and `keygen` keys that `run` accepts.

mod common;

use common::*;

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_panic(text: &str) {
    assert!(
        !text.contains("panicked at"),
        "sessiongate panicked:\n{text}"
    );
}

/// Writes the standard test config with `overrides` to `name` in a temp dir.
fn config_file(overrides: Value, name: &str) -> (SidecarConfig, String) {
    let cfg = SidecarConfig::new("http://127.0.0.1:3000", overrides);
    let path = cfg.dir.path().join(name);
    std::fs::write(&path, common::yaml::to_yaml(&cfg.config)).expect("write config");
    let path = path.to_str().expect("utf-8").to_owned();
    (cfg, path)
}

fn check(path: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = run_cli(&["check", "--config", path], env);
    let text = output_text(&out);
    assert_no_panic(&text);
    (out.status.code(), text)
}

/// `run` with a config it must refuse: returns at once.
fn run_refused(path: &str) -> (Option<i32>, String) {
    let out = run_cli(&["run", "--config", path], &[]);
    let text = output_text(&out);
    assert_no_panic(&text);
    (out.status.code(), text)
}

#[test]
fn check_accepts_a_valid_config_and_exits_0() {
    let (_cfg, path) = config_file(json!({}), "valid.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn check_accepts_the_shipped_example_config_and_warns_about_its_public_key() {
    let path = format!("{}/config/sessiongate.yaml", env!("CARGO_MANIFEST_DIR"));
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("config OK: {path}")),
        "file not named:\n{text}"
    );
    assert!(
        text.contains("warning: tokens.keys[0].private_key_file") && text.contains("example key"),
        "no warning about the committed key:\n{text}"
    );
    // A config with a key of its own gets no such warning.
    let (_cfg, own) = config_file(json!({}), "own-key.yaml");
    let (code, text) = check(&own, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("warning:"), "{text}");
}

#[test]
fn an_unknown_key_makes_check_exit_2_naming_the_file_and_key_path() {
    let (_cfg, path) = config_file(json!({"upstream": {"colour": "blue"}}), "bad-unknown.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("bad-unknown.yaml"), "file not named:\n{text}");
    assert!(
        text.contains("upstream.colour"),
        "key path not named:\n{text}"
    );
}

#[test]
fn an_unknown_key_makes_run_exit_2_at_once_naming_the_key_path() {
    let (_cfg, path) = config_file(json!({"upstream": {"colour": "blue"}}), "bad-run.yaml");
    let (code, text) = run_refused(&path);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("upstream.colour"),
        "key path not named:\n{text}"
    );
}

#[test]
fn a_missing_key_file_is_a_bad_config_naming_the_key_path() {
    let (cfg, _) = config_file(json!({}), "unused.yaml");
    let missing = cfg.dir.path().join("nowhere").join("k1.pem");
    let overrides = json!({"tokens": {"keys": [{"kid": "k1", "alg": "EdDSA", "private_key_file": missing.to_str().unwrap()}]}});
    let (_cfg2, path) = config_file(overrides, "missing-key.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("tokens.keys[0].private_key_file"),
        "key path not named:\n{text}"
    );
}

/// Proves a key file that is there but does not parse (the keys are built
/// outside the config module) still fails `check` and `run` with exit code 2
/// at the key's path.
#[test]
fn a_key_file_that_holds_no_key_is_a_bad_config_for_check_and_run() {
    let (cfg, _) = config_file(json!({}), "unused.yaml");
    let garbage = cfg.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let overrides = json!({"tokens": {"keys": [{"kid": "k1", "alg": "EdDSA", "private_key_file": garbage.to_str().unwrap()}]}});
    let (_cfg2, path) = config_file(overrides, "garbage-key.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("tokens.keys[0].private_key_file") && text.contains("garbage.pem"),
        "key path not named:\n{text}"
    );
    let (code, text) = run_refused(&path);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("tokens.keys[0].private_key_file"),
        "key path not named:\n{text}"
    );
}

#[test]
fn a_yaml_syntax_error_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syntax.yaml");
    std::fs::write(
        &path,
        "upstream:\n  url: http://127.0.0.1:1\n  connect_timeout: 2s: 3s\ntokens:\n  keys:\n    - kid: k1\n      alg: EdDSA\n      private_key_file: k1.pem\n",
    )
    .unwrap();
    let (code, text) = check(path.to_str().unwrap(), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("syntax.yaml"), "file not named:\n{text}");
    let lower = text.to_lowercase();
    let names_line_3 = lower.contains("line 3") || lower.contains(":3:");
    assert!(
        names_line_3 && lower.contains("column"),
        "line 3 and a column not named:\n{text}"
    );
}

#[test]
fn a_duplicate_key_is_named_with_its_line_and_column_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.yaml");
    std::fs::write(
        &path,
        "server:\n  listen: 127.0.0.1:8080\n  listen: 127.0.0.1:8081\nupstream:\n  url: http://127.0.0.1:1\n",
    )
    .unwrap();
    let (code, text) = check(path.to_str().unwrap(), &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("line 3 column 3") && text.contains("duplicate") && text.contains("listen"),
        "{text}"
    );
    // Neither the parser's advice on its own options nor a source snippet.
    assert!(!text.contains("DuplicateKeyPolicy"), "{text}");
    assert!(!text.contains("127.0.0.1:8081"), "{text}");
}

#[test]
fn an_unset_environment_variable_is_a_config_error() {
    let (_cfg, path) = config_file(
        json!({"upstream": {"url": "${SG_TEST_SURELY_UNSET_VAR}"}}),
        "env.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("SG_TEST_SURELY_UNSET_VAR"),
        "the variable is not named:\n{text}"
    );
    assert!(
        text.contains("upstream.url"),
        "the key path is not named:\n{text}"
    );
}

#[test]
fn a_set_environment_variable_is_substituted() {
    let (_cfg, path) = config_file(
        json!({"upstream": {"url": "${SG_TEST_UPSTREAM_URL}"}}),
        "env.yaml",
    );
    let (code, text) = check(&path, &[("SG_TEST_UPSTREAM_URL", "http://127.0.0.1:4567")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("http://127.0.0.1:4567"),
        "the summary does not show the substituted URL:\n{text}"
    );
}

#[test]
fn a_default_after_colon_dash_is_used_when_the_variable_is_unset() {
    let (_cfg, path) = config_file(
        json!({"upstream": {"url": "${SG_TEST_SURELY_UNSET_VAR:-http://127.0.0.1:3999}"}}),
        "env-default.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("http://127.0.0.1:3999"),
        "the default was not used:\n{text}"
    );
}

#[test]
fn check_never_prints_an_hs256_secret() {
    let secret = "do-not-print-me-0123456789-abcdefghijklmnop";
    let keys = json!({"tokens": {"keys": [{"kid": "h1", "alg": "HS256", "secret": secret}]}});
    let (_cfg, path) = config_file(keys.clone(), "hs.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains(secret), "check printed the secret:\n{text}");

    let mut bad = keys;
    bad["upstream"] = json!({"colour": "blue"});
    let (_cfg, path) = config_file(bad, "hs-bad.yaml");
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        !text.contains(secret),
        "a config error printed the secret:\n{text}"
    );
}

/// Starts a sidecar whose only key is the one `keygen --alg ALG` printed, and
/// checks that it signs with it.
fn keygen_key_is_accepted_by_run(alg: &str) {
    let printed = keygen(alg, "kx");
    let up = Upstream::start();
    let cfg = SidecarConfig::new(&up.url(), json!({}));
    let entry = if alg == "HS256" {
        let secret = printed.trim();
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not a base64url secret: {secret:?}"
        );
        assert!(
            common::jwt::b64_decode(secret).len() >= 32,
            "fewer than 32 bytes of secret"
        );
        json!({"kid": "kx", "alg": alg, "secret": secret})
    } else {
        assert!(
            printed.contains("-----BEGIN PRIVATE KEY-----")
                && printed.contains("-----END PRIVATE KEY-----"),
            "not a PKCS#8 PEM: {printed}"
        );
        json!({"kid": "kx", "alg": alg, "private_key_file": cfg.write_file("kx.pem", &printed)})
    };
    let mut cfg = cfg;
    cfg.config["tokens"]["keys"] = json!([entry]);
    let sc = cfg.spawn();
    let tok = sc.login("alice");
    let (header, _) = common::jwt::decode(&s(&tok, "access_token"));
    assert_eq!(header["alg"], alg);
    assert_eq!(header["kid"], "kx");
    assert_eq!(sc.get(PRIVATE, Some(&s(&tok, "access_token"))).status, 200);
}

#[test]
fn a_keygen_eddsa_key_is_accepted_by_run() {
    keygen_key_is_accepted_by_run("EdDSA");
}

#[test]
fn a_keygen_es256_key_is_accepted_by_run() {
    keygen_key_is_accepted_by_run("ES256");
}

#[test]
fn a_keygen_rs256_key_is_accepted_by_run() {
    keygen_key_is_accepted_by_run("RS256");
}

#[test]
fn a_keygen_hs256_secret_is_accepted_by_run() {
    keygen_key_is_accepted_by_run("HS256");
}

#[test]
fn sigterm_makes_run_exit_0() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    assert_eq!(sc.admin_get("/healthz").status, 200);
    assert_eq!(sc.stop(), Some(0), "{}", sc.logs());
}

#[test]
fn a_listener_that_cannot_be_had_is_exit_1_naming_its_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    let cases = [
        (json!({"server": {"listen": busy}}), "server.listen"),
        (
            json!({"server": {"admin_listen": busy}}),
            "server.admin_listen",
        ),
        // An address that is not on this host (TEST-NET-3).
        (
            json!({"server": {"listen": "203.0.113.9:8080"}}),
            "server.listen",
        ),
    ];
    for (overrides, key) in cases {
        let mut sc = SidecarConfig::new("http://127.0.0.1:3000", overrides).spawn_unready();
        let code = sc.wait_exit(std::time::Duration::from_secs(10));
        let logs = sc.logs();
        assert_eq!(
            code,
            Some(Some(1)),
            "{key}: still running or wrong exit\n{logs}"
        );
        assert!(logs.contains(key), "{key} not named:\n{logs}");
        assert_no_panic(&logs);
    }
    drop(taken);
}

/// The workers share their port with SO_REUSEPORT; a second sessiongate
/// on the same address must not join them and split the clients between
/// two configs.
#[test]
fn a_second_sidecar_on_the_listen_address_of_a_running_one_exits_1() {
    let up = Upstream::start();
    let first = Sidecar::start(&up, json!({"server": {"threads": 2}}));
    let listen = format!("127.0.0.1:{}", first.port());
    let mut second = SidecarConfig::new(
        &up.url(),
        json!({"server": {"listen": listen, "threads": 2},
               "routes": [{"prefix": "/", "auth": "none"}]}),
    )
    .spawn_unready();
    let code = second.wait_exit(std::time::Duration::from_secs(10));
    let logs = second.logs();
    assert_eq!(code, Some(Some(1)), "still running or wrong exit\n{logs}");
    assert!(logs.contains("server.listen"), "not named:\n{logs}");
    // Every request still meets the first one's policy.
    for _ in 0..20 {
        assert_error(&first.get(PRIVATE, None), 401, "missing_token");
    }
}

#[test]
fn a_login_path_that_takes_a_built_in_route_is_refused() {
    for taken in [
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/sessions",
        "/v1/auth/sessions/revoke-all",
        "/.well-known/jwks.json",
    ] {
        let (_cfg, path) = config_file(json!({"login": {"path": taken}}), "login-path.yaml");
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{taken}: {text}");
        assert!(text.contains("login.path"), "{taken}: {text}");
    }
    let (_cfg, path) = config_file(
        json!({"login": {"path": "/v1/auth/signin"}}),
        "login-ok.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn keygen_refuses_a_kid_the_config_would_refuse() {
    for kid in ["bad kid!", &"x".repeat(65), ""] {
        let out = run_cli(&["keygen", "--alg", "EdDSA", "--kid", kid], &[]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{kid:?}: {text}");
        assert!(out.stdout.is_empty(), "a key was printed for {kid:?}");
        assert!(text.contains("--kid"), "{text}");
    }
    let out = run_cli(&["keygen", "--alg", "EdDSA", "--kid", "k-2026.11_a"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

#[test]
fn a_route_with_an_empty_methods_list_is_refused() {
    let (_cfg, path) = config_file(
        json!({"routes": [{"prefix": "/a", "auth": "none", "methods": []}, {"prefix": "/", "auth": "required"}]}),
        "no-methods.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("routes[0].methods"), "{text}");
    // A list of bad names is reported for them, not as an empty list.
    let (_cfg, path) = config_file(
        json!({"routes": [{"prefix": "/a", "auth": "none", "methods": ["G ET"]}, {"prefix": "/", "auth": "required"}]}),
        "bad-method.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("routes[0].methods[0]") && text.contains("not an HTTP method"),
        "{text}"
    );
    assert!(!text.contains("empty list"), "{text}");
}

/// SPEC 6 takes `X-A` and `x_a` for one header when it drops a client's
/// copies, so two identity headers spelled so would be one header.
#[test]
fn header_names_equal_under_the_spec_6_comparison_are_refused() {
    let cases = [
        (
            json!({"identity_headers": {"user_id": "X-A", "session_id": "x_a"}}),
            "identity_headers",
        ),
        (
            json!({"identity_headers": {"session_id": "X-Auth-Claims"}}),
            "identity_headers",
        ),
        (
            json!({"login": {"subject_header": "X-Who", "claims_header": "x_who"}}),
            "login.claims_header",
        ),
    ];
    for (overrides, key) in cases {
        let (_cfg, path) = config_file(overrides.clone(), "same-names.yaml");
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{overrides}: {text}");
        assert!(text.contains(key), "{overrides}: {text}");
    }
    let (_cfg, path) = config_file(
        json!({"identity_headers": {"user_id": "X-A", "session_id": "X-B"}}),
        "different-names.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

/// Events kept for less than a minute could never be read back.
#[test]
fn security_events_kept_less_than_a_minute_are_refused() {
    for retain in ["0s", "59s"] {
        let (_cfg, path) = config_file(
            json!({"security_events": {"retain": retain}}),
            "retain.yaml",
        );
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{retain}: {text}");
        assert!(text.contains("security_events.retain"), "{text}");
    }
    let (_cfg, path) = config_file(json!({"security_events": {"retain": "1m"}}), "retain.yaml");
    assert_eq!(check(&path, &[]).0, Some(0));
}

#[test]
fn listen_and_admin_listen_on_one_port_of_overlapping_addresses_are_refused() {
    for (listen, admin) in [
        ("0.0.0.0:18931", "127.0.0.1:18931"),
        ("127.0.0.1:18931", "0.0.0.0:18931"),
        ("127.0.0.1:18931", "127.0.0.1:18931"),
    ] {
        let (_cfg, path) = config_file(
            json!({"server": {"listen": listen, "admin_listen": admin}}),
            "same-port.yaml",
        );
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{listen} / {admin}: {text}");
        assert!(text.contains("server.admin_listen"), "{text}");
    }
    // Same port on two distinct addresses is fine.
    let (_cfg, path) = config_file(
        json!({"server": {"listen": "127.0.0.1:18931", "admin_listen": "127.0.0.2:18931"}}),
        "two-addresses.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_revoke_header_that_is_not_a_free_header_name_is_refused() {
    for (name, what) in [("Authorization", "reserved"), ("bad name", "invalid")] {
        let (_cfg, path) = config_file(
            json!({"upstream": {"revoke_header": name}}),
            "revoke-header.yaml",
        );
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{what}: {text}");
        assert!(text.contains("upstream.revoke_header"), "{what}: {text}");
    }
    let (_cfg, path) = config_file(
        json!({"upstream": {"revoke_header": "X-App-Logout"}}),
        "revoke-ok.yaml",
    );
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn redis_settings_that_cannot_work_are_refused_naming_their_key_path_and_never_a_secret() {
    let secret = "hunter2-do-not-print";
    let url = format!("redis://:{secret}@127.0.0.1:6379/0");
    let sentinel = json!({"master_name": "mymaster", "urls": ["redis://127.0.0.1:26379"]});
    let cases = [
        (json!({"url": url, "tls": {}}), "store.redis.tls"),
        (
            json!({"url": format!("rediss://:{secret}@localhost:6380/"), "tls": {"cert_file": "c.pem"}}),
            "store.redis.tls.key_file",
        ),
        (
            json!({"url": ["rediss://localhost:7000", url]}),
            "store.redis.url[1]",
        ),
        (
            json!({"url": url, "sentinel": sentinel}),
            "store.redis.sentinel",
        ),
        (
            json!({"sentinel": {"urls": ["redis://127.0.0.1:26379"]}}),
            "store.redis.sentinel.master_name",
        ),
        (
            json!({"sentinel": {"master_name": "mymaster", "urls": []}}),
            "store.redis.sentinel.urls",
        ),
        (
            json!({"url": "rediss://localhost:6380/", "tls": {"ca_file": "missing-ca.pem"}}),
            "store.redis.tls.ca_file",
        ),
        (json!({"url": url, "password": ""}), "store.redis.password"),
        (json!({"url": url, "passwd": secret}), "store.redis.passwd"),
    ];
    for (redis, key) in cases {
        let (_cfg, path) = config_file(
            json!({"store": {"backend": "redis", "redis": redis}}),
            "redis.yaml",
        );
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(2), "{key}: {text}");
        assert!(text.contains(key), "{key} not named:\n{text}");
        assert!(
            !text.contains(secret),
            "{key}: a secret was printed:\n{text}"
        );
    }
    // The same shapes done right pass, and `check` names the password without printing it.
    let (cfg, path) = config_file(json!({}), "redis-ok.yaml");
    let ca = common::tls::TestCa::new("check CA");
    let client = ca.server_cert();
    let tls = json!({
        "ca_file": cfg.write_file("ca.pem", &ca.pem),
        "cert_file": cfg.write_file("client.crt", &client.cert_pem),
        "key_file": cfg.write_file("client.key", &client.key_pem),
    });
    for redis in [
        json!({"url": "rediss://localhost:6380/", "tls": tls, "password": secret}),
        json!({"sentinel": {"master_name": "mymaster", "urls": ["rediss://127.0.0.1:26379"]}, "tls": tls}),
        json!({"url": ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"], "password": secret}),
    ] {
        let mut config = cfg.config.clone();
        common::yaml::deep_merge(
            &mut config,
            json!({"store": {"backend": "redis", "redis": redis}}),
        );
        std::fs::write(&path, common::yaml::to_yaml(&config)).unwrap();
        let (code, text) = check(&path, &[]);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("store:           redis"), "{text}");
        assert!(!text.contains(secret), "a secret was printed:\n{text}");
    }
}
