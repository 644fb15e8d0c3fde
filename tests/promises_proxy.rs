//! Promises of the proxy path that no other test held the binary to:
//! `optional` routes, custom identity-header names, and the upstream
//! connect timeout.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const OPTIONAL: &str = "/opt/things";

fn optional_routes() -> Value {
    json!({"routes": [
        {"prefix": "/opt/", "auth": "optional"},
        {"prefix": "/public/", "auth": "none"},
        {"prefix": "/", "auth": "required"},
    ]})
}

const FORGED_IDENTITY: &[(&str, &str)] = &[
    ("X-Auth-User-Id", "forged-user"),
    ("x_auth_session_id", "forged-sid"),
    ("X-AUTH-CLAIMS", r#"{"role":"root"}"#),
];

fn with_headers(mut req: Request, headers: &[(&str, &str)]) -> Request {
    for (n, v) in headers {
        req = req.header(n, v);
    }
    req
}

#[test]
fn an_optional_route_forwards_anonymous_requests_without_identity_headers() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, optional_routes());
    for auth in [None, Some("Basic YWxpY2U6cHc=")] {
        let mut req = with_headers(Request::get(OPTIONAL), FORGED_IDENTITY);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = sc.send(req);
        assert_eq!(r.status, 200, "anonymous ({auth:?}): {}", r.describe());
        let echo = r.json();
        for name in ["X-Auth-User-Id", "X-Auth-Session-Id", "X-Auth-Claims"] {
            assert_eq!(
                echoed(&echo, name),
                Vec::<String>::new(),
                "{name} reached the upstream on an anonymous optional request ({auth:?})"
            );
        }
    }
    assert_eq!(up.requests_to(OPTIONAL).len(), 2);
}

#[test]
fn an_optional_route_refuses_a_bad_token_with_the_rfc6750_challenge() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, optional_routes());
    let tok = sc.login("alice");
    let logged_out = sc.login("alice");
    let r = sc.send(Request::post("/v1/auth/logout").bearer(&s(&logged_out, "access_token")));
    assert_eq!(r.status, 204, "{}", r.describe());
    let mut forged = s(&tok, "access_token");
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    for (token, code) in [
        ("not-a-jwt".to_owned(), "invalid_token"),
        (forged, "invalid_token"),
        (s(&logged_out, "access_token"), "session_revoked"),
    ] {
        let r = sc.send(with_headers(
            Request::get(OPTIONAL).bearer(&token),
            FORGED_IDENTITY,
        ));
        assert_error(&r, 401, code);
        let challenge = r.header("WWW-Authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error_description="),
            "a refused token's challenge names why: {challenge}"
        );
    }
    // `Bearer` with no credentials is a bad token, not an anonymous request.
    let r = sc.send(Request::get(OPTIONAL).header("Authorization", "Bearer"));
    assert_error(&r, 401, "invalid_token");
    assert!(
        up.requests_to(OPTIONAL).is_empty(),
        "a refused request reached the upstream"
    );
}

#[test]
fn an_optional_route_with_a_valid_token_carries_the_identity() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, optional_routes());
    let tok = sc.login("bob");
    let r = sc.send(with_headers(
        Request::get(OPTIONAL).bearer(&s(&tok, "access_token")),
        FORGED_IDENTITY,
    ));
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echoed(&echo, "X-Auth-User-Id"), ["user-bob"]);
    assert_eq!(echoed(&echo, "X-Auth-Session-Id"), [s(&tok, "session_id")]);
    let claims = echoed(&echo, "X-Auth-Claims");
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&claims[0]).unwrap(),
        json!({"role": "user"})
    );
}

/// SPEC 6: the *configured* names are set and their client copies removed
/// (any case, `_` = `-`), on protected and public routes. After a rename the
/// default names are ordinary headers and pass like any other.
#[test]
fn custom_identity_header_names_are_set_and_their_client_copies_removed() {
    let up = Upstream::start();
    let sc = Sidecar::start(
        &up,
        json!({"identity_headers": {
            "user_id": "X-Legacy-User",
            "session_id": "X-Legacy-Session",
            "claims": "X-Legacy-Claims",
        }}),
    );
    let forged: &[(&str, &str)] = &[
        ("X-Legacy-User", "forged"),
        ("x_legacy_user", "forged-underscore"),
        ("X-LEGACY-SESSION", "forged-sid"),
        ("x-legacy_claims", r#"{"role":"root"}"#),
        ("X-Auth-User-Id", "an-ordinary-header-now"),
    ];
    let tok = sc.login("alice");
    let r = sc.send(with_headers(
        Request::get(PRIVATE).bearer(&s(&tok, "access_token")),
        forged,
    ));
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echoed(&echo, "X-Legacy-User"), ["user-alice"]);
    assert_eq!(echoed(&echo, "X-Legacy-Session"), [s(&tok, "session_id")]);
    let claims = echoed(&echo, "X-Legacy-Claims");
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&claims[0]).unwrap(),
        json!({"role": "admin"})
    );
    assert_eq!(
        echoed(&echo, "X-Auth-User-Id"),
        ["an-ordinary-header-now"],
        "only the configured names are identity headers"
    );
    assert_eq!(echoed(&echo, "X-Auth-Session-Id"), Vec::<String>::new());

    let r = sc.send(with_headers(Request::get("/public/page"), forged));
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    for name in ["X-Legacy-User", "X-Legacy-Session", "X-Legacy-Claims"] {
        assert_eq!(
            echoed(&echo, name),
            Vec::<String>::new(),
            "{name} from the client reached the upstream on a public route"
        );
    }
}

/// A listening socket on 127.0.0.1 that never accepts and whose accept queue
/// is full, so the kernel drops further SYNs: a connect to it hangs. Linux
/// admits `backlog + 1` connections to the queue; the rest wait on SYN
/// retransmission. The runtime and the filling connections must stay alive.
struct Unaccepting {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
}

impl Unaccepting {
    fn start() -> Unaccepting {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime");
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
            socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            socket.listen(1).expect("listen")
        });
        let addr = listener.local_addr().expect("local addr");
        let mut queued = Vec::new();
        for _ in 0..64 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Unaccepting {
                        addr,
                        _runtime: runtime,
                        _listener: listener,
                        _queued: queued,
                    };
                }
                Err(e) => panic!("connect to the filling listener: {e}"),
            }
        }
        panic!(
            "the accept queue never filled after {} connections",
            queued.len()
        );
    }
}

#[test]
fn an_upstream_that_never_accepts_is_502_after_the_connect_timeout() {
    let hole = Unaccepting::start();
    let sc = SidecarConfig::new(
        &format!("http://{}", hole.addr),
        json!({"upstream": {"connect_timeout": "1s", "request_timeout": "30s"}}),
    )
    .spawn();
    let started = Instant::now();
    let r = sc.get("/public/page", None);
    let took = started.elapsed();
    assert_error(&r, 502, "upstream_unavailable");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}: before the connect timeout, so the upstream was never tried?"
    );
    assert!(
        took < Duration::from_secs(8),
        "answered after {took:?}: the 1s connect timeout was not applied"
    );
}
