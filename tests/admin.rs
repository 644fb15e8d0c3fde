//! The admin listener (SPEC 7) and graceful shutdown (SPEC 1).

mod common;

use std::time::{Duration, Instant};

use common::metrics::{families, samples, value};
use common::*;

#[test]
fn healthz_and_readyz_answer_200() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    assert_eq!(sc.admin_get("/healthz").status, 200);
    assert_eq!(sc.admin_get("/readyz").status, 200);
    assert_eq!(sc.admin_get("/nope").status, 404);
}

/// SPEC 6: a request id on every response sessiongate writes, the admin
/// listener's included: the client's when acceptable, else a new one.
#[test]
fn admin_responses_carry_a_request_id() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let mut seen = Vec::new();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/nope",
        "/admin/v1/users/u/sessions",
    ] {
        let r = sc.admin_get(path);
        let id = r.header("X-Request-Id").map(str::to_owned);
        let id = id.unwrap_or_else(|| panic!("{path}: no X-Request-Id: {}", r.describe()));
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{path}: {id}"
        );
        seen.push(id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 5, "request ids repeat: {seen:?}");
    let mine = Request::get("/healthz").header("X-Request-Id", "trace-42.a_b");
    assert_eq!(
        mine.send(sc.admin_port()).header("X-Request-Id"),
        Some("trace-42.a_b")
    );
    let bad = Request::get("/healthz").header("X-Request-Id", "no spaces allowed");
    let r = bad.send(sc.admin_port());
    assert_ne!(
        r.header("X-Request-Id"),
        Some("no spaces allowed"),
        "{}",
        r.describe()
    );
    assert!(r.header("X-Request-Id").is_some());
}

const FAMILIES: &[(&str, &str)] = &[
    ("sessiongate_http_requests_total", "counter"),
    ("sessiongate_http_request_duration_seconds", "histogram"),
    ("sessiongate_upstream_request_duration_seconds", "histogram"),
    ("sessiongate_token_validations_total", "counter"),
    ("sessiongate_refresh_total", "counter"),
    ("sessiongate_security_events_total", "counter"),
    ("sessiongate_sessions_created_total", "counter"),
    ("sessiongate_sessions_revoked_total", "counter"),
    ("sessiongate_revocation_list_entries", "gauge"),
    ("sessiongate_store_operation_duration_seconds", "histogram"),
    ("sessiongate_store_errors_total", "counter"),
    ("sessiongate_revocation_list_evictions_total", "counter"),
    (
        "sessiongate_revocation_last_sync_timestamp_seconds",
        "gauge",
    ),
    ("sessiongate_build_info", "gauge"),
];

/// The counters an operator alerts on show every label value at 0 before
/// anything happened (README "Admin listener"), so that `rate()` and
/// `increase()` see the first event.
#[test]
fn alerting_counters_are_present_at_0_before_any_traffic() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let text = sc.metrics();
    let series = samples(&text);
    let expected: &[(&str, &str, &[&str])] = &[
        (
            "sessiongate_security_events_total",
            "type",
            &[
                "refresh_token_reuse",
                "new_ip",
                "new_device",
                "session_revoked",
                "revoke_all",
                "login",
                "upstream_revoke",
            ],
        ),
        (
            "sessiongate_sessions_revoked_total",
            "reason",
            &[
                "user",
                "revoke_all",
                "logout",
                "reuse",
                "limit",
                "admin",
                "upstream",
            ],
        ),
        (
            "sessiongate_refresh_total",
            "result",
            &[
                "rotated", "grace", "reused", "invalid", "expired", "revoked",
            ],
        ),
        (
            "sessiongate_config_reloads_total",
            "result",
            &["ok", "error"],
        ),
    ];
    for (name, label, values) in expected {
        for v in *values {
            let found = series
                .iter()
                .find(|(n, l, _)| n == name && l.iter().any(|(k, lv)| k == label && lv == v));
            let Some((_, _, value)) = found else {
                panic!("{name}{{{label}=\"{v}\"}} is missing from a fresh /metrics");
            };
            assert_eq!(*value, 0.0, "{name}{{{label}=\"{v}\"}}");
        }
    }
}

#[test]
fn metrics_has_every_spec_family_after_traffic() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    assert_eq!(sc.get(PRIVATE, Some(&s(&tok, "access_token"))).status, 200);
    assert_eq!(sc.get(PRIVATE, None).status, 401);
    let new = sc.refresh(&s(&tok, "refresh_token")).json();
    let access = s(&new, "access_token");
    assert_eq!(
        sc.send(Request::get("/v1/auth/sessions").bearer(&access))
            .status,
        200
    );
    assert_eq!(sc.get("/.well-known/jwks.json", None).status, 200);
    assert_eq!(
        sc.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&access))
            .status,
        200
    );
    let other = sc.login("bob");
    assert_eq!(
        sc.send(Request::post("/v1/auth/logout").bearer(&s(&other, "access_token")))
            .status,
        204
    );

    let text = sc.metrics();
    let names: Vec<String> = samples(&text).into_iter().map(|(n, _, _)| n).collect();
    let types = families(&text);
    for (name, kind) in FAMILIES {
        let declared = types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str());
        assert_eq!(declared, Some(*kind), "# TYPE of {name}");
        let wanted: Vec<String> = if *kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect()
        } else {
            vec![name.to_string()]
        };
        for w in wanted {
            assert!(names.contains(&w), "{w} missing from /metrics");
        }
    }
    let v = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    for route in ["login", "proxy", "refresh", "sessions", "jwks", "logout"] {
        assert!(
            v("sessiongate_http_requests_total", &[("route", route)]) >= 1.0,
            "route {route} not counted"
        );
    }
    assert!(
        v(
            "sessiongate_http_requests_total",
            &[("route", "proxy"), ("status", "401")]
        ) >= 1.0
    );
    assert!(
        v(
            "sessiongate_http_request_duration_seconds_count",
            &[("route", "proxy")]
        ) >= 1.0
    );
    assert!(v("sessiongate_upstream_request_duration_seconds_count", &[]) >= 1.0);
    assert!(v("sessiongate_token_validations_total", &[("result", "ok")]) >= 1.0);
    assert!(
        v(
            "sessiongate_token_validations_total",
            &[("result", "missing")]
        ) >= 1.0,
        "a request without a token on a protected route is not counted as result=\"missing\""
    );
    assert!(v("sessiongate_refresh_total", &[("result", "rotated")]) >= 1.0);
    assert!(
        v(
            "sessiongate_security_events_total",
            &[("type", "revoke_all")]
        ) >= 1.0
    );
    assert_eq!(v("sessiongate_sessions_created_total", &[]), 2.0);
    assert!(
        v(
            "sessiongate_sessions_revoked_total",
            &[("reason", "revoke_all")]
        ) >= 1.0
    );
    assert!(
        v(
            "sessiongate_sessions_revoked_total",
            &[("reason", "logout")]
        ) >= 1.0
    );
    assert!(v("sessiongate_revocation_list_entries", &[]) >= 2.0);
    assert!(
        v(
            "sessiongate_store_operation_duration_seconds_count",
            &[("backend", "sqlite")]
        ) >= 1.0
    );
    assert_eq!(v("sessiongate_revocation_list_evictions_total", &[]), 0.0);
    let version = run_cli(&["--version"], &[]);
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version.split_whitespace().last().expect("a version");
    assert_eq!(v("sessiongate_build_info", &[("version", version)]), 1.0);
    // SQLite is local: the list is always in sync, so "now".
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let synced = v("sessiongate_revocation_last_sync_timestamp_seconds", &[]);
    assert!((now - synced).abs() < 60.0, "last sync {synced}, now {now}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_and_exits_0_within_the_grace() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({"server": {"shutdown_grace": "3s"}}));
    let port = sc.port();
    let slow = std::thread::spawn(move || Request::get("/public/slow?ms=1500").send(port));
    assert!(
        up.wait_for(Duration::from_secs(5), |r| r.path == "/public/slow")
            .is_some(),
        "the slow request never reached the upstream"
    );
    let signalled = Instant::now();
    sc.sigterm();
    // While the request drains, the probes still answer: alive, not ready.
    let ready = sc.wait_readyz(503, Duration::from_secs(1));
    assert!(ready.text().contains("shutting down"), "{}", ready.text());
    let health = sc.admin_get("/healthz");
    assert_eq!(health.status, 200, "{}", health.describe());
    assert!(
        !slow.is_finished(),
        "the slow request ended before the probes were checked"
    );
    let r = slow.join().expect("the slow request thread");
    assert_eq!(
        r.status,
        200,
        "the in-flight request was cut: {}",
        r.describe()
    );
    let code = sc.wait_exit(Duration::from_secs(3 + 2));
    assert_eq!(
        code,
        Some(Some(0)),
        "no clean exit within shutdown_grace + 2 s\n{}",
        sc.logs()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn an_idle_sidecar_exits_promptly_on_sigterm() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({"server": {"shutdown_grace": "10s"}}));
    let t0 = Instant::now();
    sc.sigterm();
    assert_eq!(
        sc.wait_exit(Duration::from_secs(12)),
        Some(Some(0)),
        "{}",
        sc.logs()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "idle shutdown took {:?}",
        t0.elapsed()
    );
}

#[test]
fn the_logs_are_json_lines_with_security_events_and_no_tokens() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let tok = sc.login_with_agent("alice", "log-ua");
    let proxied = sc.get(PRIVATE, Some(&s(&tok, "access_token")));
    assert_eq!(proxied.status, 200);
    let request_id = proxied
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    // A hostile path cannot forge fields or lines in the access log.
    let hostile = sc.send(Request::get("/public/\",\"user_id\":\"root"));
    assert_eq!(hostile.status, 200, "{}", hostile.describe());
    assert_eq!(hostile.json()["path"], "/public/\",\"user_id\":\"root");
    assert_eq!(
        sc.send(Request::post("/v1/auth/sessions/revoke-all").bearer(&s(&tok, "access_token")))
            .status,
        200
    );
    assert_eq!(sc.stop(), Some(0));
    let lines = sc.stdout_lines();
    assert!(!lines.is_empty(), "nothing logged on stdout");
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let event = parsed
        .iter()
        .find(|o| o["target"] == "security" && o["type"] == "revoke_all")
        .unwrap_or_else(|| panic!("no revoke_all security event in\n{}", lines.join("\n")));
    for field in ["type", "user_id", "session_id", "ip", "user_agent", "at"] {
        assert!(
            event.get(field).is_some(),
            "security event lacks {field}: {event}"
        );
    }
    assert_eq!(event["user_id"], "user-alice");

    let access = parsed
        .iter()
        .find(|o| o["target"] == "access" && o["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access line for {request_id} in\n{}", lines.join("\n")));
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], PRIVATE);
    assert_eq!(access["status"], 200);
    assert_eq!(access["route"], "proxy");
    assert_eq!(access["client_ip"], "127.0.0.1");
    assert_eq!(access["user_id"], "user-alice");
    assert!(access["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert!(access["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 27));
    let forged = parsed
        .iter()
        .find(|o| {
            o["target"] == "access"
                && o["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/public/"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no access line for the hostile path in\n{}",
                lines.join("\n")
            )
        });
    assert!(
        forged.get("user_id").is_none(),
        "a path forged a field: {forged}"
    );

    let text = lines.join("\n");
    assert!(
        !text.contains(&s(&tok, "access_token")) && !text.contains(&s(&tok, "refresh_token")),
        "a token is logged"
    );
}

#[test]
fn readyz_says_200_only_once_the_client_listener_accepts() {
    // pingora binds the client listener on its own schedule, after the admin
    // listener: the first 200 must already mean "the proxy answers".
    for _ in 0..3 {
        let up = Upstream::start();
        let mut sc = SidecarConfig::new(&up.url(), json!({})).spawn_unready();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if Request::get("/readyz")
                .try_send(sc.admin_port())
                .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            assert!(Instant::now() < deadline, "never ready\n{}", sc.logs());
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = Request::get("/public/first").try_send(sc.port());
        assert!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            "ready, but the client listener did not answer: {:?}",
            r.map(|r| r.status)
        );
        assert_eq!(sc.stop(), Some(0));
    }
}

/// The harness itself: a picked port that someone else took before the
/// sidecar bound it is a collision, retried on fresh ports, not a failure.
#[test]
fn a_port_taken_before_start_up_is_retried_on_fresh_ports() {
    let up = Upstream::start();
    let cfg = SidecarConfig::new(&up.url(), json!({}));
    let taken = std::net::TcpListener::bind(("127.0.0.1", cfg.port)).expect("take the port");
    let sc = cfg.spawn();
    assert_ne!(sc.port(), taken.local_addr().expect("addr").port());
    assert_eq!(sc.get("/public/x", None).status, 200);
}
