//! Black-box regression tests for the holes a black-box attack on the release
//! binary found: request-target forms, the login upstream path, forwarded-for
//! parsing, cookie mode, framing. Everything goes over raw sockets to the real
//! binary, so the tests hold whatever HTTP framework the data plane uses.

mod common;

use std::time::Duration;

use common::*;

/// A request that exercises no route: when the upstream has seen it, every
/// request sent before it has been seen too (or never will be).
fn sentinel(sc: &Sidecar, up: &Upstream, marker: &str) {
    let path = format!("/public/sentinel-{marker}");
    assert_eq!(sc.get(&path, None).status, 200);
    up.wait_for(Duration::from_secs(10), |r| r.path == path)
        .expect("the sentinel reached the upstream");
}

/// Paths the upstream received, apart from sentinels.
fn forwarded(up: &Upstream) -> Vec<String> {
    up.records()
        .into_iter()
        .filter(|r| !r.path.starts_with("/public/sentinel-"))
        .map(|r| {
            if r.query.is_empty() {
                r.path
            } else {
                format!("{}?{}", r.path, r.query)
            }
        })
        .collect()
}

fn raw(sc: &Sidecar, head: &str) -> Response {
    exchange(sc.port(), head.as_bytes())
        .unwrap_or_else(|e| panic!("no answer to {head:?}: {e}\n{}", sc.logs()))
}

/// Routes of the published attack: `/` public, everything else protected.
fn root_public_sidecar(up: &Upstream) -> Sidecar {
    Sidecar::start(
        up,
        json!({"routes": [
            {"exact": "/", "auth": "none"},
            {"prefix": "/public/", "auth": "none"},
            {"prefix": "/", "auth": "required"},
        ]}),
    )
}

#[test]
fn request_targets_that_are_not_paths_are_400_and_never_forwarded() {
    let up = Upstream::start();
    let sc = root_public_sidecar(&up);
    let port = sc.port();
    let attacks = [
        "GET 127.0.0.1:80 HTTP/1.1",
        "GET * HTTP/1.1",
        "GET httpx://h/admin HTTP/1.1",
    ];
    // Targets the HTTP parser (hyper, with the http crate's URI rules)
    // cannot read as a URI at all: it answers them itself with a plain 400
    // (README, "What happens to a request").
    let unparseable = [
        "GET x:/admin/users HTTP/1.1",
        "GET x:/admin%2f..%2fsecret HTTP/1.1",
        "GET admin/users HTTP/1.1",
        "GET mailto:/admin HTTP/1.1",
        "GET http:/admin HTTP/1.1",
    ];
    for (i, line) in attacks.iter().enumerate() {
        let r = raw(
            &sc,
            &format!("{line}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        );
        assert_error(&r, 400, "bad_request");
        assert!(
            r.header("X-Request-Id").is_some(),
            "{line}: {}",
            r.describe()
        );
        sentinel(&sc, &up, &i.to_string());
    }
    for (i, line) in unparseable.iter().enumerate() {
        let r = raw(
            &sc,
            &format!("{line}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 400, "{line}: {}", r.describe());
        sentinel(&sc, &up, &format!("u{i}"));
    }
    assert_eq!(forwarded(&up), Vec::<String>::new());
}

#[test]
fn connect_is_refused_and_never_forwarded() {
    let up = Upstream::start();
    let sc = root_public_sidecar(&up);
    let port = sc.port();
    let r = raw(
        &sc,
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    );
    // CONNECT is never a tunnel through sessiongate (README).
    assert_error(&r, 400, "bad_request");
    sentinel(&sc, &up, "connect");
    assert_eq!(forwarded(&up), Vec::<String>::new());
}

#[test]
fn absolute_form_is_decided_and_forwarded_as_origin_form() {
    let up = Upstream::start();
    let sc = root_public_sidecar(&up);
    let port = sc.port();
    let get = |target: &str, extra: &str| {
        raw(
            &sc,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
            ),
        )
    };
    // Public by its path: forwarded, in origin-form, normalized.
    let r = get(&format!("http://127.0.0.1:{port}/public/a/../b?q=1"), "");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(forwarded(&up), ["/public/b?q=1"]);
    // Protected by its path: the token decides, whatever the scheme's case.
    let r = get(&format!("HTTP://127.0.0.1:{port}/admin/users"), "");
    assert_error(&r, 401, "missing_token");
    let token = s(&sc.login("alice"), "access_token");
    let r = get(
        &format!("http://127.0.0.1:{port}/admin/users"),
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("/admin/users").pop().expect("forwarded");
    assert_eq!(rec.header_values("X-Auth-User-Id"), ["user-alice"]);
    // The upstream saw origin-form targets only.
    for rec in up.records() {
        assert!(rec.path.starts_with('/'), "{rec:?}");
    }
}

#[test]
fn options_asterisk_is_authenticated_and_forwarded_as_asterisk() {
    let up = Upstream::start();
    let sc = root_public_sidecar(&up);
    let port = sc.port();
    let head = |auth: &str| {
        format!("OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n")
    };
    // `*` matches no route: the default, auth required.
    assert_error(&raw(&sc, &head("")), 401, "missing_token");
    sentinel(&sc, &up, "a");
    assert_eq!(forwarded(&up), Vec::<String>::new());
    let token = s(&sc.login("alice"), "access_token");
    let r = raw(&sc, &head(&format!("Authorization: Bearer {token}\r\n")));
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = up.requests_to("*").pop().expect("forwarded as *");
    assert_eq!(rec.method, "OPTIONS");
    assert_eq!(rec.header_values("X-Auth-User-Id"), ["user-alice"]);
}

#[test]
fn the_login_upstream_path_is_not_a_proxied_route() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let token = s(&sc.login("alice"), "access_token");
    let logins_before = up.requests_to("/login").len();
    for path in [
        "/login",
        "/LOGIN",
        "/login/",
        "/login;jsessionid=1",
        "/%6Cogin",
        "/a/../login",
    ] {
        for method in ["POST", "GET"] {
            let r = sc.send(
                Request::new(method, path)
                    .bearer(&token)
                    .json(&json!({"username": "alice", "password": "guess"})),
            );
            assert_error(&r, 404, "not_found");
        }
    }
    sentinel(&sc, &up, "login");
    assert_eq!(up.requests_to("/login").len(), logins_before);
    // The login route itself still works.
    assert_eq!(sc.login_response("bob", "pw").status, 200);
}

#[test]
fn the_login_upstream_path_can_be_allowed_and_its_control_headers_never_reach_a_client() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"login": {"allow_direct_upstream_path": true}}));
    let token = s(&sc.login("alice"), "access_token");
    let r = sc.send(
        Request::post("/login")
            .bearer(&token)
            .json(&json!({"username": "bob", "password": "pw"})),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["user"], "bob", "the upstream's own answer");
    for h in ["X-Session-Subject", "X-Session-Claims"] {
        assert!(
            r.header(h).is_none(),
            "{h} reached the client: {}",
            r.describe()
        );
    }
}

#[test]
fn the_login_rate_limit_cannot_be_bypassed_through_the_upstream_path() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"rate_limits": {"login": {"per_minute": 1, "burst": 2}}}),
    );
    let token = s(&sc.login("alice"), "access_token");
    assert_eq!(sc.login_response("alice", "wrong").status, 401);
    assert_error(&sc.login_response("alice", "wrong"), 429, "rate_limited");
    let guess = sc.send(
        Request::post("/login")
            .bearer(&token)
            .json(&json!({"username": "alice", "password": "guess"})),
    );
    assert_error(&guess, 404, "not_found");
}

/// A sidecar behind a trusted proxy on loopback, and a limit of one login per IP.
fn behind_proxy(up: &Upstream) -> Sidecar {
    Sidecar::start(
        up,
        json!({
            "server": {"trusted_proxies": ["127.0.0.1/32"]},
            "rate_limits": {"login": {"per_minute": 1, "burst": 1}},
        }),
    )
}

fn login_via(sc: &Sidecar, xff: &str) -> Response {
    sc.send(
        Request::post("/v1/auth/login")
            .header("X-Forwarded-For", xff)
            .json(&json!({"username": "alice", "password": "pw"})),
    )
}

fn session_ip(sc: &Sidecar, login: &Response) -> String {
    let token = s(&login.json(), "access_token");
    let list = sc.send(Request::get("/v1/auth/sessions").bearer(&token));
    assert_eq!(list.status, 200, "{}", list.describe());
    let sid = s(&login.json(), "session_id");
    let sessions = list.json()["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let me = sessions
        .iter()
        .find(|x| x["id"] == sid.as_str())
        .expect("own session listed");
    s(me, "ip")
}

#[test]
fn forwarded_for_entries_with_ports_name_the_client() {
    let up = Upstream::start();
    let sc = behind_proxy(&up);
    let a = login_via(&sc, "6.6.6.6, 203.0.113.7:51234");
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(session_ip(&sc, &a), "203.0.113.7");
    let b = login_via(&sc, "6.6.6.6, [2001:db8::7]:443");
    assert_eq!(b.status, 200, "{}", b.describe());
    assert_eq!(session_ip(&sc, &b), "2001:db8::7");
    // The same client again, whatever the left entry claims: one bucket.
    assert_error(
        &login_via(&sc, "7.7.7.7, 203.0.113.7:1"),
        429,
        "rate_limited",
    );
}

#[test]
fn an_unreadable_forwarded_for_entry_never_hands_the_client_ip_to_the_left_entry() {
    let up = Upstream::start();
    let sc = behind_proxy(&up);
    let a = login_via(&sc, "6.6.6.6, unknown");
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(session_ip(&sc, &a), "127.0.0.1", "the hop that reported it");
    // Another spoofed left entry is still the same client: rate limited.
    assert_error(&login_via(&sc, "8.8.8.8, unknown"), 429, "rate_limited");
}

// ---- cookie mode --------------------------------------------------------------

fn cookie_sidecar(up: &Upstream) -> Sidecar {
    Sidecar::start(
        up,
        json!({"sessions": {"refresh_cookie": {"name": "sg_refresh", "path": "/v1/auth", "secure": true, "same_site": "Strict"}}}),
    )
}

#[test]
fn two_refresh_cookies_are_refused_and_use_up_nothing() {
    let up = Upstream::start();
    let sc = cookie_sidecar(&up);
    let victim = s(&sc.login("alice").clone(), "refresh_token");
    let attacker = s(&sc.login("bob"), "refresh_token");
    let origin = format!("http://127.0.0.1:{}", sc.port());
    for cookies in [
        vec![format!("sg_refresh={attacker}; sg_refresh={victim}")],
        vec![
            format!("sg_refresh={attacker}"),
            format!("sg_refresh={victim}"),
        ],
    ] {
        let mut req = Request::post("/v1/auth/refresh").header("Origin", &origin);
        for c in &cookies {
            req = req.header("Cookie", c);
        }
        assert_error(&sc.send(req), 400, "invalid_request");
    }
    // Neither token was spent.
    assert_eq!(sc.refresh(&victim).status, 200);
    assert_eq!(sc.refresh(&attacker).status, 200);
}

#[test]
fn a_cookie_mode_login_from_another_site_is_refused_before_the_upstream_sees_it() {
    let up = Upstream::start();
    let sc = cookie_sidecar(&up);
    let port = sc.port();
    let login = |headers: &[(&str, &str)]| {
        let mut req =
            Request::post("/v1/auth/login").json(&json!({"username": "alice", "password": "pw"}));
        for (n, v) in headers {
            req = req.header(n, v);
        }
        sc.send(req)
    };
    for foreign in [
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "null")],
        vec![("Referer", "https://evil.example/page")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![
            ("Origin", &*format!("http://127.0.0.1:{port}")),
            ("Sec-Fetch-Site", "same-site"),
        ],
    ] {
        assert_error(&login(&foreign), 403, "invalid_request");
    }
    sentinel(&sc, &up, "csrf");
    assert!(up.requests_to("/login").is_empty());
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(
        login(&[("Origin", &own), ("Sec-Fetch-Site", "same-origin")]).status,
        200
    );
    // A client that is not a browser names no origin: login CSRF needs a browser.
    assert_eq!(login(&[]).status, 200);
}

#[test]
fn logout_with_a_refused_access_token_ends_the_session_by_its_refresh_token() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let t = sc.login("alice");
    let (access, refresh) = (s(&t, "access_token"), s(&t, "refresh_token"));
    let out = sc.send(
        Request::post("/v1/auth/logout")
            .bearer("not.a.token")
            .json(&json!({"refresh_token": refresh})),
    );
    assert_eq!(out.status, 204, "{}", out.describe());
    assert_error(&sc.refresh(&refresh), 401, "session_revoked");
    assert_error(&sc.get(PRIVATE, Some(&access)), 401, "session_revoked");
    // No refresh token to fall back on: the refusal is the answer.
    let t = sc.login("alice");
    let out = sc.send(Request::post("/v1/auth/logout").bearer("not.a.token"));
    assert_error(&out, 401, "invalid_token");
    assert_eq!(
        sc.refresh(&s(&t, "refresh_token")).status,
        200,
        "still alive"
    );
}

// ---- framing ------------------------------------------------------------------

#[test]
fn content_length_with_transfer_encoding_is_never_forwarded_ambiguously() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let port = sc.port();
    // RFC 9112 6.1: Transfer-Encoding wins, the Content-Length is dropped
    // before forwarding, and the connection is closed after the answer, so
    // bytes after the chunked body can never be read as a second request.
    for order in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ] {
        let bytes = format!(
            "POST /public/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{order}\r\n\r\n\
             0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        std::io::Write::write_all(&mut s, bytes.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "one answer, then the connection closed: {text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        let rec = up.requests_to("/public/x").pop().expect("forwarded");
        assert!(rec.header("Content-Length").is_none(), "{rec:?}");
        assert_eq!(rec.header("Transfer-Encoding").as_deref(), Some("chunked"));
    }
    sentinel(&sc, &up, "clte");
    assert!(up.requests_to("/public/smuggled").is_empty());
}

#[test]
fn expect_continue_on_login_and_proxied_routes_is_answered_not_a_panic() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let port = sc.port();
    let body = r#"{"username":"alice","password":"pw"}"#;
    let r = raw(
        &sc,
        &format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let token = s(&r.json(), "access_token");
    let rec = up.requests_to("/login").pop().expect("login forwarded");
    assert!(rec.header("Expect").is_none(), "{rec:?}");
    let r = raw(
        &sc,
        &format!(
            "POST {PRIVATE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
             Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["body"], "hello");
}

// ---- what the upstream answers --------------------------------------------------

mod scripted_upstream {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::common::scripted::{Reply, Scripted, SeenRequest};
    use super::common::*;

    fn login_ok() -> Reply {
        Reply::status(200)
            .header("X-Session-Subject", "user-alice")
            .header("X-Session-Claims", r#"{"role":"admin"}"#)
            .body("{}")
    }

    fn sidecar(up: &Scripted) -> Sidecar {
        SidecarConfig::new(&up.url(), json!({})).spawn()
    }

    /// Sends `head`, then reads the answer's head (status line and headers).
    fn open(port: u16, head: &str) -> (TcpStream, String) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(head.as_bytes()).expect("write");
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                _ => break,
            }
        }
        (s, String::from_utf8_lossy(&got).into_owned())
    }

    #[test]
    fn interim_answers_to_login_are_skipped() {
        let up = Scripted::start(|_: &SeenRequest| {
            login_ok()
                .interim(100, &[])
                .interim(103, &[("Link", "</s.css>; rel=preload")])
        });
        let sc = sidecar(&up);
        let r = sc.login_response("alice", "pw");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(r.json()["access_token"].is_string(), "{}", r.describe());
    }

    #[test]
    fn a_switch_of_protocols_on_login_is_a_broken_upstream() {
        let up = Scripted::start(|_: &SeenRequest| {
            Reply::switching()
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
        });
        let sc = sidecar(&up);
        assert_error(
            &sc.login_response("alice", "pw"),
            502,
            "upstream_unavailable",
        );
    }

    #[test]
    fn a_101_nobody_asked_for_is_502_never_a_tunnel() {
        let up = Scripted::start(|req: &SeenRequest| match req.path() {
            "/login" => login_ok(),
            "/public/bare" => Reply::switching(),
            "/public/mismatch" => Reply::switching()
                .header("Upgrade", "h2c")
                .header("Connection", "Upgrade"),
            _ => Reply::switching()
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade"),
        });
        let sc = sidecar(&up);
        let port = sc.port();
        // No Upgrade asked for: a 101 with or without Upgrade is refused.
        for path in ["/public/bare", "/public/unasked"] {
            let r = exchange(
                port,
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .expect("an answer");
            assert_error(&r, 502, "upstream_unavailable");
        }
        // Asked for websocket, offered h2c: refused.
        let ask = |path: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
        };
        let (_s, head) = open(port, &ask("/public/mismatch"));
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
        // Asked for websocket and agreed: the tunnel works both ways.
        let (mut s, head) = open(port, &ask("/public/ws"));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(b"ping").expect("write through the tunnel");
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).expect("echo through the tunnel");
        assert_eq!(&echo, b"ping");
    }
}
