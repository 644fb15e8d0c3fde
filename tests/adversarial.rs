//! Attacks on the gap between the auth decision and the upstream's router,
//! through the real binary and raw sockets. Every test ends by checking what
//! the upstream actually received: an unauthenticated request on a protected
//! path never gets there, whatever the status line said.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::jwt::{now, EdKey};
use common::*;
use sessiongate::proxy::path::normalize;

const IDENTITY: [&str; 3] = ["X-Auth-User-Id", "X-Auth-Session-Id", "X-Auth-Claims"];

/// The invariant of this file: every request the upstream saw is on a public
/// path in normalized form, with no identity header, unless `user` is given,
/// in which case protected requests carry exactly that user's identity.
fn assert_no_bypass(up: &Upstream, user: Option<&str>) {
    for r in up.records() {
        // `/login` is where sessiongate itself forwards logins (`login.upstream_path`).
        let public = (r.path.starts_with("/public/") || r.path == "/login")
            && normalize(&r.path).is_ok_and(|n| n == r.path.as_str());
        let ids = r.header_values("X-Auth-User-Id");
        match user {
            Some(u) if !public => assert_eq!(ids, [u], "protected request {r:?}"),
            Some(_) => {}
            None => {
                assert!(public, "an unauthenticated request reached {r:?}");
                for h in IDENTITY {
                    assert!(r.header(h).is_none(), "{h} reached the upstream: {r:?}");
                }
            }
        }
    }
}

/// `Host`, `Connection: close`, the given head lines, then `body`.
fn raw_request(port: u16, method: &str, target: &str, lines: &[&str], body: &str) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("Connection: close\r\n\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// Sends `bytes` and reads until the server closes (or 5 s): every status
/// line seen, in order. Empty when the server closed without answering.
fn statuses(port: u16, bytes: &[u8]) -> Vec<u16> {
    let text = read_all(port, bytes, Duration::from_secs(5));
    text.split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

fn read_all(port: u16, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    let _ = s.write_all(bytes);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn get(sc: &Sidecar, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Request::get(target);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    sc.send(req)
}

/// A token for `sub`/`sid`, signed by the sidecar's own key, with `extra` claims merged in.
fn hand_signed(sc: &Sidecar, sub: &str, extra: Value) -> String {
    let key = EdKey::from_pem(&sc.cfg.key_pem());
    let mut claims = json!({
        "iss": "sessiongate", "aud": "upstream", "sub": sub, "sid": "AAAAAAAAAAAAAAAAAAAAAA",
        "iat": now(), "exp": now() + 600, "jti": "j1",
    });
    yaml::deep_merge(&mut claims, extra);
    key.sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}), &claims)
}

fn start(up: &Upstream) -> Sidecar {
    Sidecar::start(
        up,
        json!({"routes": [
            {"prefix": "/healthz", "auth": "none"},
            {"prefix": "/public/", "auth": "none"},
            {"prefix": "/", "auth": "required"},
        ]}),
    )
}

// ---- path tricks -----------------------------------------------------------

#[test]
fn dot_segment_and_separator_tricks_never_reach_a_protected_path_without_a_token() {
    let up = Upstream::start();
    let sc = start(&up);
    let refused = [
        "/public/%2E%2E/api/x",
        "/public/.%2E/api/x",
        "/public/%2e./api/x",
        "/public/x/..%2Fapi",
        "/public%2F../api/x",
        "/public/%5C../api/x",
        "/public/..%5Capi/x",
        "/public/..;/api/x",
        "/public/..;foo=bar/api/x",
        "/public/x%00.json",
        "/public/%00/../api/x",
        "/public/%2e%2e%3b/api/x",
        "/public/.%3Bx/../api/x",
        "/public/%09/../api/x",
        "/public/x%0D%0AX-Auth-User-Id:%20admin",
        "/%2fapi/x",
        "/public/%",
        "/public/%g0",
        "*",
    ];
    for target in refused {
        let r = sc.send(Request::get(target));
        assert_eq!(r.status, 400, "{target}: {}", r.describe());
    }
    let unauthenticated = [
        "/public/./../api/x",
        "/public//../api/x",
        "//api/x",
        "/healthz/../api/x",
        "/healthz/..",
        "/public/..",
        "/public",
        "/PUBLIC/x",
        "/Public/x",
        "/public;/x",
        "/public/x%23/../../api/x",
        "/public/x%3F/../../api/x",
    ];
    for target in unauthenticated {
        let r = sc.send(Request::get(target));
        assert_error(&r, 401, "missing_token");
    }
    assert_no_bypass(&up, None);
}

#[test]
fn backslashes_fragments_and_raw_controls_in_the_target_are_refused() {
    let up = Upstream::start();
    let sc = start(&up);
    for target in [
        "/public\\..\\api\\x",
        "/public/..\\api/x",
        "/public/\t/../api/x",
        "/public/\x0b/../api/x",
        "/public/x\t/api",
    ] {
        let st = statuses(sc.port(), &raw_request(sc.port(), "GET", target, &[], ""));
        assert!(
            st.first().is_none_or(|s| *s == 400),
            "{target:?}: statuses {st:?}"
        );
    }
    // pingora's parser drops a fragment before sessiongate sees the target:
    // the decision and the forward are both on the part before `#`.
    for (target, seen) in [
        ("/public/x#/../../api/x", "/public/x"),
        ("/public/#/../api/x", "/public/"),
    ] {
        let st = statuses(sc.port(), &raw_request(sc.port(), "GET", target, &[], ""));
        match st.first() {
            None | Some(400) => {}
            Some(200) => assert_eq!(
                up.records().last().map(|r| r.path.clone()).as_deref(),
                Some(seen),
                "{target:?}"
            ),
            other => panic!("{target:?}: {other:?}"),
        }
    }
    let r = sc.send(Request::get("/api/x#/../../public/y"));
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_no_bypass(&up, None);
}

#[test]
fn encoded_unreserved_characters_are_decoded_before_the_decision_and_forwarded_decoded() {
    let up = Upstream::start();
    let sc = start(&up);
    let r = sc.send(Request::get("/%70ublic/x"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["path"], "/public/x");
    let r = sc.send(Request::get("/public/%2e%2e%2fapi"));
    assert_eq!(r.status, 400, "{}", r.describe());
    let r = sc.send(Request::get("/%61pi/x"));
    assert_error(&r, 401, "missing_token");
    // A parameter on an ordinary segment stays; the upstream sees the same path.
    let r = sc.send(Request::get("/api/x;/../../public/y"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["path"], "/public/y");
    assert_no_bypass(&up, None);
}

#[test]
fn an_absolute_form_target_is_decided_and_forwarded_on_its_path_alone() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    for target in [
        format!("http://127.0.0.1:{port}/api/x"),
        format!("http://127.0.0.1:{port}/public/../api/x"),
        "http://evil.example/api/x".to_owned(),
        "https://127.0.0.1/api/x".to_owned(),
    ] {
        let st = statuses(port, &raw_request(port, "GET", &target, &[], ""));
        assert!(
            matches!(st.first(), None | Some(400 | 401)),
            "{target}: {st:?}"
        );
    }
    let st = statuses(
        port,
        &raw_request(port, "GET", "http://evil.example/public/x", &[], ""),
    );
    assert!(
        matches!(st.first(), None | Some(200 | 400)),
        "public absolute-form: {st:?}"
    );
    for r in up.records() {
        assert!(
            r.path.starts_with('/'),
            "the upstream got an absolute-form target: {r:?}"
        );
    }
    assert_no_bypass(&up, None);
}

#[test]
fn overlong_utf8_encodings_of_dot_and_slash_are_refused() {
    let up = Upstream::start();
    let sc = start(&up);
    for target in [
        "/public/%c0%ae%c0%ae/api/x",
        "/public/%C0%AE%C0%AE/api/x",
        "/public/x%c0%afapi",
        "/public/%e0%80%ae%e0%80%ae/api/x",
        "/public/%c1%9capi",
        "/public/%f0%80%80%af",
    ] {
        let r = sc.send(Request::get(target));
        assert_eq!(r.status, 400, "{target}: {}", r.describe());
    }
    // Genuine UTF-8 stays usable.
    let r = sc.send(Request::get("/public/caf%C3%A9"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_no_bypass(&up, None);
}

// ---- headers that re-route or re-authorize ---------------------------------

#[test]
fn rewrite_url_headers_from_a_client_never_reach_the_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let r = get(
        &sc,
        "/public/x",
        &[
            ("X-Original-URL", "/api/admin"),
            ("X-Rewrite-URL", "/api/admin"),
            ("X-Original-URI", "/api/admin"),
            ("X-Forwarded-Uri", "/api/admin"),
            ("X-Forwarded-Path", "/api/admin"),
            ("X-Forwarded-Prefix", "/api"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/public/x").pop().expect("forwarded");
    for h in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Original-URI",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Forwarded-Prefix",
    ] {
        assert!(rec.header(h).is_none(), "{h} reached the upstream: {rec:?}");
    }
    let r = get(&sc, "/api/admin", &[("X-Original-URL", "/public/x")]);
    assert_error(&r, 401, "missing_token");
    assert_no_bypass(&up, None);
}

#[test]
fn client_ip_headers_from_an_untrusted_peer_are_not_believed_by_the_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let r = get(
        &sc,
        "/public/x",
        &[
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("X-Real-IP", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1;proto=https;host=admin.internal"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Server", "admin.internal"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "admin.internal"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/public/x").pop().expect("forwarded");
    assert_eq!(rec.header_values("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(rec.header_values("X-Forwarded-Proto"), ["http"]);
    assert_eq!(
        rec.header_values("X-Forwarded-Host"),
        [format!("127.0.0.1:{}", sc.port())]
    );
    for h in [
        "X-Real-IP",
        "Forwarded",
        "X-Forwarded-Port",
        "X-Forwarded-Server",
    ] {
        assert!(rec.header(h).is_none(), "{h} reached the upstream: {rec:?}");
    }
    assert_no_bypass(&up, None);
}

#[test]
fn a_method_override_header_is_decided_on_the_stricter_of_both_methods() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"routes": [
            {"prefix": "/public/", "auth": "none", "methods": ["GET", "HEAD"]},
            {"prefix": "/", "auth": "required"},
        ]}),
    );
    for h in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "x-http-method-override",
    ] {
        let r = get(&sc, "/public/x", &[(h, "DELETE")]);
        assert_error(&r, 401, "missing_token");
    }
    let r = sc.send(Request::get("/public/x?_method=DELETE"));
    assert_error(&r, 401, "missing_token");
    // The override names a method the public rule allows: still public.
    let r = get(&sc, "/public/x", &[("X-HTTP-Method-Override", "HEAD")]);
    assert_eq!(r.status, 200, "{}", r.describe());
    for r in up.records() {
        assert!(
            r.header("X-HTTP-Method-Override")
                .is_none_or(|m| m.eq_ignore_ascii_case("HEAD")),
            "an override reached the upstream unauthenticated: {r:?}"
        );
        assert!(!r.query.contains("_method"), "{r:?}");
    }
    // With a token, the override is forwarded for the upstream to honour.
    let tok = sc.login("alice");
    let r = sc.send(
        Request::post("/public/x")
            .bearer(&s(&tok, "access_token"))
            .header("X-HTTP-Method-Override", "DELETE"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_no_bypass(&up, Some("user-alice"));
}

#[test]
fn identity_headers_in_odd_spellings_and_in_trailers_never_reach_the_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let body = "5\r\nhello\r\n0\r\nX-Auth-User-Id: admin\r\nx_auth_session_id: s\r\n\r\n";
    let st = statuses(
        port,
        &raw_request(
            port,
            "POST",
            "/public/upload",
            &[
                "Transfer-Encoding: chunked",
                "Trailer: X-Auth-User-Id",
                "X_AUTH_USER_ID: admin",
                "x-AUTH_user-ID: admin",
                "X-Auth-Claims: {\"role\":\"admin\"}",
                "X-AUTH-CLAIMS: {}",
            ],
            body,
        ),
    );
    assert!(matches!(st.first(), Some(200 | 400)), "{st:?}");
    assert_no_bypass(&up, None);
    // A name with whitespace before the colon is a framing error, never a header.
    let st = statuses(
        port,
        &raw_request(port, "GET", "/public/x", &["X-Auth-User-Id : admin"], ""),
    );
    assert!(matches!(st.first(), None | Some(400)), "{st:?}");
    assert_no_bypass(&up, None);
}

#[test]
fn connection_nominated_headers_cannot_remove_what_sessiongate_sets() {
    let up = Upstream::start();
    let sc = start(&up);
    let tok = sc.login("alice");
    let r = sc.send(
        Request::get("/api/x")
            .bearer(&s(&tok, "access_token"))
            .header(
                "Connection",
                "keep-alive, X_Auth_User_Id, X-Request-Id, X-Auth-Claims",
            )
            .header("X-Auth-User-Id", "admin"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/api/x").pop().expect("forwarded");
    assert_eq!(rec.header_values("X-Auth-User-Id"), ["user-alice"]);
    assert_eq!(rec.header_values("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(rec.header_values("X-Auth-Claims").len(), 1, "{rec:?}");
    assert!(rec.header("X-Request-Id").is_some(), "{rec:?}");
    // pingora refuses to drop the forwarding headers at a client's word: fail closed.
    let r = sc.send(
        Request::get("/api/z")
            .bearer(&s(&tok, "access_token"))
            .header("Connection", "X-Forwarded-For"),
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert!(up.requests_to("/api/z").is_empty(), "{:?}", up.records());
    // Nominating Authorization does not turn a protected request into an anonymous one.
    let r = sc.send(
        Request::get("/api/y")
            .bearer(&s(&tok, "access_token"))
            .header("Connection", "Authorization"),
    );
    assert!(r.status == 200 || r.status == 401, "{}", r.describe());
    assert_no_bypass(&up, Some("user-alice"));
}

// ---- request smuggling -----------------------------------------------------

/// Each framing case ends with a smuggled `GET /api/smuggled`: it must never
/// reach the upstream, and no forwarded request may carry both framings.
fn assert_no_smuggling(up: &Upstream) {
    std::thread::sleep(Duration::from_millis(200));
    for r in up.records() {
        assert_ne!(r.path, "/api/smuggled", "smuggled through: {r:?}");
        assert!(
            r.header("Content-Length").is_none() || r.header("Transfer-Encoding").is_none(),
            "forwarded with both framings: {r:?}"
        );
    }
    assert_no_bypass(up, None);
}

#[test]
fn conflicting_or_odd_framing_headers_never_smuggle_a_second_request() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let tail = format!("GET /api/smuggled HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let chunked_then_smuggle = format!("0\r\n\r\n{tail}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["Content-Length: 5", "Transfer-Encoding: chunked"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding: chunked", "Content-Length: 5"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Content-Length: 0", "Content-Length: 60"],
            tail.clone(),
        ),
        (vec!["Content-Length: 0, 60"], tail.clone()),
        (vec!["Content-Length: +0"], tail.clone()),
        (vec!["Content-Length: -1"], tail.clone()),
        (vec!["Content-Length: 0x0"], tail.clone()),
        (vec!["Content-Length:  0 0"], tail.clone()),
        (vec!["Transfer-Encoding: xchunked"], tail.clone()),
        (vec!["Transfer-Encoding: chunked, identity"], tail.clone()),
        (
            vec!["Transfer-Encoding: identity, chunked"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding: CHUNKED"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding:\tchunked"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding: chunked", "Transfer-Encoding: x"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding : chunked"],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding: \"chunked\""],
            chunked_then_smuggle.clone(),
        ),
        (
            vec!["Transfer-Encoding: identity", " chunked"],
            chunked_then_smuggle.clone(),
        ),
        (vec!["X-Folded: a", " b", "Content-Length: 0"], tail.clone()),
        (vec!["X-Bare-CR: a\rContent-Length: 0"], tail.clone()),
    ];
    for (lines, body) in &cases {
        let bytes = raw_request(port, "POST", "/public/form", lines, body);
        let st = statuses(port, &bytes);
        assert!(
            st.iter().all(|s| matches!(s, 200 | 400 | 401 | 411 | 501)),
            "{lines:?}: {st:?}"
        );
        assert!(
            st.iter().skip(1).all(|s| *s != 200),
            "{lines:?}: a second request was answered 200: {st:?}"
        );
    }
    assert_no_smuggling(&up);
}

#[test]
fn bare_lf_line_endings_never_smuggle_a_second_request() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let bytes = "POST /public/form HTTP/1.1\nHost: x\nContent-Length: 0\n\nGET /api/smuggled HTTP/1.1\nHost: x\n\n";
    let st = statuses(port, bytes.as_bytes());
    assert!(st.iter().all(|s| matches!(s, 200 | 400 | 401)), "{st:?}");
    assert_no_smuggling(&up);
}

#[test]
fn a_pipelined_second_request_is_authenticated_on_its_own() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let tok = sc.login("alice");
    let access = s(&tok, "access_token");
    // An authenticated first request must not lend its identity to the second.
    let bytes = format!(
        "GET /api/first HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {access}\r\n\r\n\
         GET /api/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let st = statuses(port, bytes.as_bytes());
    assert_eq!(st.first(), Some(&200), "{st:?}");
    assert!(
        st.get(1).is_none_or(|s| *s == 401),
        "the second request: {st:?}"
    );
    assert!(
        up.requests_to("/api/second").is_empty(),
        "{:?}",
        up.records()
    );
    assert_no_bypass(&up, Some("user-alice"));
}

#[test]
fn a_get_with_a_body_carrying_a_request_forwards_one_request_framed_one_way() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let inner = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let bytes = raw_request(
        port,
        "GET",
        "/public/x",
        &[&format!("Content-Length: {}", inner.len())],
        inner,
    );
    let st = statuses(port, &bytes);
    assert!(matches!(st.as_slice(), [200] | [400]), "{st:?}");
    for r in up.requests_to("/public/x") {
        assert_eq!(r.body, inner, "the body was reframed: {r:?}");
    }
    assert_no_smuggling(&up);
}

// ---- sizes -----------------------------------------------------------------

#[test]
fn oversized_heads_tokens_and_auth_bodies_are_refused_before_the_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    // A 2 MiB head: pingora's own parser limit; closed or 400/431, never forwarded.
    let big = format!("X-Big: {}", "a".repeat(2 << 20));
    let st = statuses(port, &raw_request(port, "GET", "/public/x", &[&big], ""));
    assert!(matches!(st.first(), None | Some(400 | 431)), "{st:?}");
    // A long target alone.
    let target = format!("/public/{}", "a".repeat(20_000));
    let r = sc.send(Request::get(&target));
    assert!(matches!(r.status, 400 | 414 | 431), "{}", r.describe());
    // One byte over the token limit, on a protected path.
    let token = "a".repeat(8193);
    let r = sc.get("/api/x", Some(&token));
    assert_error(&r, 401, "invalid_token");
    // A chunked refresh body over max_auth_body_bytes, with no Content-Length to warn.
    let chunk = "b".repeat(20_000);
    let body = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let st = statuses(
        port,
        &raw_request(
            port,
            "POST",
            "/v1/auth/refresh",
            &[
                "Transfer-Encoding: chunked",
                "Content-Type: application/json",
            ],
            &body,
        ),
    );
    assert_eq!(st.first(), Some(&413), "{st:?}");
    assert_no_bypass(&up, None);
}

// ---- upgrades and Expect ---------------------------------------------------

#[test]
fn websocket_and_h2c_upgrades_without_a_token_are_refused_and_not_forwarded() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let ws = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    let st = statuses(port, &raw_request(port, "GET", "/api/ws", &ws, ""));
    assert_eq!(st.first(), Some(&401), "{st:?}");
    let h2c = [
        "Upgrade: h2c",
        "Connection: Upgrade, HTTP2-Settings",
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
    ];
    let st = statuses(port, &raw_request(port, "GET", "/api/x", &h2c, ""));
    assert_eq!(st.first(), Some(&401), "{st:?}");
    // On a public path h2c is answered over HTTP/1.1 and never upgraded upstream.
    let st = statuses(port, &raw_request(port, "GET", "/public/x", &h2c, ""));
    assert!(matches!(st.first(), Some(200 | 400)), "{st:?}");
    for r in up.records() {
        assert!(
            r.header("Upgrade")
                .is_none_or(|u| !u.eq_ignore_ascii_case("h2c")),
            "h2c upgrade forwarded: {r:?}"
        );
    }
    // HTTP/2 prior knowledge on the HTTP/1 listener.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let text = read_all(port, preface, Duration::from_secs(3));
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text:?}"
    );
    assert_no_bypass(&up, None);
}

#[test]
fn expect_100_continue_without_a_token_gets_401_and_no_continue() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let head = "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let text = read_all(port, head.as_bytes(), Duration::from_secs(3));
    assert!(
        text.starts_with("HTTP/1.1 401"),
        "the first answer must be the 401, not 100 Continue: {:?}",
        text.get(..text.len().min(200))
    );
    assert_no_bypass(&up, None);
}

// ---- claims ----------------------------------------------------------------

#[test]
fn control_characters_in_claims_never_become_extra_headers() {
    let up = Upstream::start();
    let sc = start(&up);
    for sub in [
        "alice\r\nX-Auth-User-Id: admin",
        "alice\nx",
        "alice\0",
        "a\rb",
    ] {
        let t = hand_signed(&sc, sub, json!({}));
        assert_error(&sc.get("/api/x", Some(&t)), 401, "invalid_token");
    }
    let t = hand_signed(
        &sc,
        "carol",
        json!({"sid": "s\r\nX-Evil: 1", "ext": {"role": "x"}}),
    );
    assert_error(&sc.get("/api/x", Some(&t)), 401, "invalid_token");
    // In ext the JSON encoding escapes them: one header, no injected line.
    let t = hand_signed(
        &sc,
        "carol",
        json!({"ext": {"role": "user\r\nX-Evil: 1", "big": "z".repeat(5000)}}),
    );
    let r = sc.get("/api/x", Some(&t));
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/api/x").pop().expect("forwarded");
    assert!(rec.header("X-Evil").is_none(), "{rec:?}");
    let claims: Value =
        serde_json::from_str(&rec.header("X-Auth-Claims").expect("claims")).expect("JSON");
    assert_eq!(claims["role"], "user\r\nX-Evil: 1");
    assert_no_bypass(&up, Some("carol"));
}

// ---- logs ------------------------------------------------------------------

#[test]
fn user_agents_and_paths_cannot_forge_log_lines() {
    let up = Upstream::start();
    let sc = start(&up);
    let forged = r#"x","target":"security","type":"refresh_token_reuse","user_id":"admin"#;
    sc.send(Request::get("/public/x").header("User-Agent", forged));
    sc.send(Request::get(
        "/public/a%0D%0A%7B%22target%22:%22security%22%7D",
    ));
    sc.send(Request::get("/api/x%0a{\"forged\":1}"));
    sc.login_with_agent("alice", forged);
    std::thread::sleep(Duration::from_millis(300));
    let lines = sc.stdout_lines();
    assert!(lines.len() >= 3, "{}", sc.logs());
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert_ne!(v["forged"], 1, "{line}");
        assert_ne!(v["user_id"], "admin", "forged field: {line}");
    }
    let login = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "login" || v["fields"]["type"] == "login");
    if let Some(ev) = login {
        let ua = ev["user_agent"]
            .as_str()
            .or(ev["fields"]["user_agent"].as_str());
        assert_eq!(ua, Some(forged), "{ev}");
    }
    assert_no_bypass(&up, Some("user-alice"));
}

// ---- refresh tokens: one answer shape --------------------------------------

#[test]
fn unknown_tampered_expired_and_revoked_refresh_tokens_answer_401_with_the_same_shape() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"sessions": {"idle_timeout": "2s", "reuse_grace": "0s"}}),
    );
    let expired = sc.login("bob");
    std::thread::sleep(Duration::from_millis(3200));
    let revoked = sc.login("alice");
    let r = sc.send(Request::post("/v1/auth/logout").bearer(&s(&revoked, "access_token")));
    assert_eq!(r.status, 204, "{}", r.describe());
    let live = sc.login("alice");
    let mut tampered = s(&live, "refresh_token").into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let cases = [
        ("unknown", "A".repeat(76), "invalid_refresh_token"),
        ("garbage", "not-a-token".to_owned(), "invalid_refresh_token"),
        ("tampered", tampered, "invalid_refresh_token"),
        ("expired", s(&expired, "refresh_token"), "session_expired"),
        ("revoked", s(&revoked, "refresh_token"), "session_revoked"),
    ];
    for (what, token, code) in &cases {
        let r = sc.refresh(token);
        assert_error(&r, 401, code);
        let body = r.json();
        let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["error", "message"], "{what}: {body}");
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{what}");
    }
    assert_no_bypass(&up, None);
}

#[test]
fn odd_methods_on_a_protected_path_without_a_token_never_reach_the_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    for method in ["OPTIONS", "TRACE", "PROPFIND", "get", "FOO", "CONNECT"] {
        let st = statuses(port, &raw_request(port, method, "/api/x", &[], ""));
        assert!(
            matches!(st.first(), None | Some(400 | 401 | 405)),
            "{method}: {st:?}"
        );
    }
    let st = statuses(port, &raw_request(port, "CONNECT", "127.0.0.1:22", &[], ""));
    assert!(matches!(st.first(), None | Some(400 | 405)), "{st:?}");
    assert_no_bypass(&up, None);
}

#[test]
fn identity_headers_sent_to_login_never_reach_the_login_upstream() {
    let up = Upstream::start();
    let sc = start(&up);
    let r = sc.send(
        Request::post("/v1/auth/login")
            .header("X-Auth-User-Id", "admin")
            .header("x_auth_claims", "{\"role\":\"admin\"}")
            .header("X-Original-URL", "/api/admin")
            .json(&json!({"username": "mallory", "password": "x"})),
    );
    assert_eq!(r.status, 401, "{}", r.describe());
    let rec = up.requests_to("/login").pop().expect("forwarded to /login");
    for h in ["X-Auth-User-Id", "X-Auth-Claims", "X-Original-URL"] {
        assert!(rec.header(h).is_none(), "{h} reached /login: {rec:?}");
    }
    assert_no_bypass(&up, None);
}

#[test]
fn a_trusted_proxy_keeps_its_client_address_claims_but_never_rerouting_headers() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"server": {"trusted_proxies": ["127.0.0.1/32"]}}),
    );
    let r = get(
        &sc,
        "/public/x",
        &[
            ("X-Real-IP", "203.0.113.7"),
            ("Forwarded", "for=203.0.113.7"),
            ("X-Original-URL", "/api/admin"),
            // One list on two field lines: the whole chain is kept.
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-For", "9.9.9.9"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/public/x").pop().expect("forwarded");
    assert_eq!(
        rec.header_values("X-Forwarded-For"),
        ["1.2.3.4, 9.9.9.9, 127.0.0.1"]
    );
    assert_eq!(rec.header_values("X-Real-IP"), ["203.0.113.7"]);
    assert_eq!(rec.header_values("Forwarded"), ["for=203.0.113.7"]);
    assert!(rec.header("X-Original-URL").is_none(), "{rec:?}");
    assert_no_bypass(&up, None);
}

#[test]
fn hostile_chunk_sizes_and_extensions_never_smuggle_a_second_request() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let tail = "GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for body in [
        format!("fffffffffffffffff1\r\nx\r\n0\r\n\r\n{tail}"),
        format!("-1\r\nx\r\n0\r\n\r\n{tail}"),
        format!("0x5\r\nhello\r\n0\r\n\r\n{tail}"),
        format!("5;ext=\"a\r\nb\"\r\nhello\r\n0\r\n\r\n{tail}"),
        format!("5 \r\nhello\r\n0\r\n\r\n{tail}"),
        format!("5\nhello\n0\n\n{tail}"),
        format!("5\r\nhelloXX\r\n0\r\n\r\n{tail}"),
        format!("0\r\nX-Trailer: a\r\n Folded: b\r\n\r\n{tail}"),
    ] {
        let st = statuses(
            port,
            &raw_request(
                port,
                "POST",
                "/public/form",
                &["Transfer-Encoding: chunked"],
                &body,
            ),
        );
        assert!(
            st.iter().all(|s| matches!(s, 200 | 400 | 401)),
            "{body:?}: {st:?}"
        );
    }
    assert_no_smuggling(&up);
}

#[test]
fn http_1_0_and_0_9_requests_get_the_same_decision() {
    let up = Upstream::start();
    let sc = start(&up);
    let port = sc.port();
    let st = statuses(port, b"GET /api/x HTTP/1.0\r\n\r\n");
    assert_eq!(st.first(), Some(&401), "{st:?}");
    let st = statuses(port, b"GET /public/../api/x HTTP/1.0\r\n\r\n");
    assert_eq!(st.first(), Some(&401), "{st:?}");
    let st = statuses(port, b"GET /api/x\r\n\r\n");
    assert!(matches!(st.first(), None | Some(400 | 505)), "{st:?}");
    let st = statuses(port, b"GET /api/x HTTP/2.0\r\n\r\n");
    assert!(matches!(st.first(), None | Some(400 | 401 | 505)), "{st:?}");
    assert_no_bypass(&up, None);
}

#[test]
fn an_http_1_1_request_without_host_is_400_and_http_1_0_gets_the_upstreams() {
    let up = Upstream::start();
    let sc = start(&up);
    let r = exchange(
        sc.port(),
        b"GET /public/nohost HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer");
    assert_error(&r, 400, "bad_request");
    assert!(up.requests_to("/public/nohost").is_empty());
    // HTTP/1.0 has no Host requirement: forwarded, with the upstream's authority.
    let r = exchange(sc.port(), b"GET /public/old HTTP/1.0\r\n\r\n").expect("an answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/public/old").pop().expect("forwarded");
    assert_eq!(
        rec.header("Host").as_deref(),
        Some(up.url().trim_start_matches("http://").trim_end_matches('/'))
    );
}
