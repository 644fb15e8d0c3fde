//! What pingora did for sessiongate and the data plane owns since issue 14:
//! hop-by-hop headers, `Expect: 100-continue`, HTTP/1.0, header spelling and
//! order, streaming both ways, WebSocket, upstream keep-alive, the header
//! read timeout, HTTP/2 from clients and graceful drain. Black-box: the real
//! binary, the scripted upstream (which records raw heads), raw sockets, and
//! hyper's client for HTTP/2.

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::client::{self, connect, read_head, read_response, read_until_close};
use common::scripted::{pattern, Framing, Reply, Scripted, SeenRequest};
use common::tls::{provider, TestCa};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const WAIT: Duration = Duration::from_secs(5);

/// A scripted upstream that logs anyone in as `user-alice` (`POST /login`)
/// and answers every other request with `rest`.
fn upstream(rest: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Scripted {
    Scripted::start(move |req| {
        if req.path() == "/login" {
            Reply::status(200)
                .header("X-Session-Subject", "user-alice")
                .body("{}")
        } else {
            rest(req)
        }
    })
}

fn ok(_: &SeenRequest) -> Reply {
    Reply::status(200).body("ok")
}

/// A sidecar in front of `up` with `overrides`, and alice's token response.
fn start(up: &Scripted, overrides: Value) -> (Sidecar, Value) {
    let sc = SidecarConfig::new(&up.url(), overrides).spawn();
    let tok = sc.login("alice");
    (sc, tok)
}

fn access(tok: &Value) -> String {
    s(tok, "access_token")
}

/// The requests the upstream saw on `path` (query ignored), in order.
fn seen_on(up: &Scripted, path: &str) -> Vec<SeenRequest> {
    up.seen().into_iter().filter(|r| r.path() == path).collect()
}

/// Waits until the upstream saw a request on `path`.
fn wait_path(up: &Scripted, path: &str) -> SeenRequest {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = seen_on(up, path).pop() {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never reached the upstream"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A public request on a new connection, answered once the upstream has
/// recorded it: a request sent before it and forwarded has been recorded too.
fn sentinel(sc: &Sidecar) {
    let r = sc.get("/public/sentinel", None);
    assert_eq!(r.status, 200, "sentinel: {}", r.describe());
}

/// `rec` for a failure message, its Authorization value withheld: no token
/// in test output.
fn shown(rec: &SeenRequest) -> String {
    let headers: Vec<String> = rec
        .headers
        .iter()
        .map(|(n, v)| {
            let v = if n.eq_ignore_ascii_case("authorization") {
                "<withheld>"
            } else {
                v
            };
            format!("{n}: {v}")
        })
        .collect();
    format!("{} {} {} {headers:?}", rec.method, rec.target, rec.version)
}

/// Every request the upstream saw, as [`shown`].
fn shown_all(up: &Scripted) -> Vec<String> {
    up.seen().iter().map(shown).collect()
}

/// The identity sessiongate sets for alice's token `tok`.
fn assert_alice(rec: &SeenRequest, tok: &Value) {
    assert_eq!(
        rec.header_values("X-Auth-User-Id"),
        ["user-alice"],
        "{}",
        shown(rec)
    );
    assert_eq!(
        rec.header_values("X-Auth-Session-Id"),
        [s(tok, "session_id")],
        "{}",
        shown(rec)
    );
}

// ---- hop-by-hop headers (RFC 9110 7.6.1) ------------------------------------

// Proves: hop-by-hop request fields, and every field a Connection line names,
// stop at sessiongate while end-to-end fields pass.
#[test]
fn hop_by_hop_request_headers_and_the_ones_connection_names_are_not_forwarded() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let r = sc.send(
        Request::get("/api/hop")
            .bearer(&access(&tok))
            .header("Connection", "close, X-Drop-Me")
            .header("Connection", "x-drop-too")
            .header("X-Drop-Me", "gone")
            .header("X-Drop-Too", "gone")
            .header("Keep-Alive", "timeout=99")
            .header("Proxy-Connection", "keep-alive")
            .header("TE", "trailers, deflate")
            .header("Trailer", "X-Checksum")
            .header("Upgrade", "websocket")
            .header("X-End-To-End", "kept"),
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = seen_on(&up, "/api/hop").pop().expect("forwarded");
    assert_eq!(
        rec.header_values("X-End-To-End"),
        ["kept"],
        "{}",
        shown(&rec)
    );
    assert_alice(&rec, &tok);
    for name in [
        "X-Drop-Me",
        "X-Drop-Too",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
    ] {
        assert!(
            rec.header(name).is_none(),
            "{name} was forwarded: {}",
            shown(&rec)
        );
    }
    // sessiongate may send its own connection options, never the client's.
    for option in rec.header_values("Connection").join(",").split(',') {
        let option = option.trim().to_ascii_lowercase();
        if option.is_empty() {
            continue;
        }
        assert!(
            option == "keep-alive" || option == "close",
            "client connection option {option:?} forwarded: {}",
            shown(&rec)
        );
    }
}

// Proves: naming an identity or forwarding header in Connection never removes
// what sessiongate sets: refused 400, or forwarded with sessiongate's values.
#[test]
fn a_connection_header_naming_what_sessiongate_sets_never_removes_it() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let port = sc.port();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("X-Auth-User-Id", &[("X-Auth-User-Id", "admin")]),
        ("x_auth_session_id", &[("X-Auth-Session-Id", "forged")]),
        ("X-AUTH-CLAIMS", &[("X-Auth-Claims", r#"{"role":"root"}"#)]),
        ("X-Forwarded-For", &[("X-Forwarded-For", "203.0.113.9")]),
        ("X-Forwarded-Proto", &[("X-Forwarded-Proto", "https")]),
        ("X-Forwarded-Host", &[("X-Forwarded-Host", "evil.example")]),
        ("X-Request-Id", &[("X-Request-Id", "client-chosen-id")]),
        (
            "X-Auth-User-Id, X-Auth-Session-Id, X-Auth-Claims, X-Forwarded-For, X-Request-Id",
            &[],
        ),
    ];
    let mut refused = Vec::new();
    for (i, (nominated, sent)) in cases.iter().enumerate() {
        let path = format!("/api/nominate-{i}");
        let mut req = Request::get(&path)
            .bearer(&access(&tok))
            .header("Connection", &format!("close, {nominated}"));
        for (n, v) in *sent {
            req = req.header(n, v);
        }
        let r = sc.send(req);
        let rid = r.header("X-Request-Id").map(str::to_owned);
        assert!(
            rid.is_some(),
            "{nominated}: no X-Request-Id: {}",
            r.describe()
        );
        if r.status == 400 {
            assert_error(&r, 400, "bad_request");
            refused.push(path);
            continue;
        }
        assert_eq!(r.status, 200, "{nominated}: {}", r.describe());
        let rec = seen_on(&up, &path).pop().expect("forwarded");
        assert_alice(&rec, &tok);
        let claims = rec.header_values("X-Auth-Claims");
        assert!(
            claims.len() == 1 && !claims[0].contains("root"),
            "{nominated}: {}",
            shown(&rec)
        );
        assert_eq!(
            rec.header_values("X-Forwarded-For"),
            ["127.0.0.1"],
            "{nominated}"
        );
        assert_eq!(
            rec.header_values("X-Forwarded-Proto"),
            ["http"],
            "{nominated}"
        );
        assert_eq!(
            rec.header_values("X-Forwarded-Host"),
            [format!("127.0.0.1:{port}")],
            "{nominated}"
        );
        assert_eq!(
            rec.header_values("X-Request-Id"),
            [rid.as_deref().unwrap_or_default()],
            "{nominated}: the upstream and the client must see one request id"
        );
    }
    sentinel(&sc);
    for path in refused {
        assert!(
            seen_on(&up, &path).is_empty(),
            "{path} refused yet forwarded"
        );
    }
}

// Proves: `Authorization` is forwarded unchanged (SPEC 6) even when the
// client's Connection names it; other headers it names are still dropped.
#[test]
fn a_connection_header_naming_authorization_does_not_remove_it() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let bearer = format!("Bearer {}", access(&tok));
    for (i, nominated) in ["Authorization", "authorization, X-Other"]
        .iter()
        .enumerate()
    {
        let path = format!("/api/keeps-authorization-{i}");
        let r = sc.send(
            Request::get(&path)
                .header("Authorization", &bearer)
                .header("Connection", nominated)
                .header("X-Other", "dropped"),
        );
        assert_eq!(r.status, 200, "{nominated}: {}", r.describe());
        let rec = seen_on(&up, &path).pop().expect("forwarded");
        assert_eq!(
            rec.header_values("Authorization"),
            [bearer.as_str()],
            "{nominated}"
        );
        assert_alice(&rec, &tok);
        if nominated.contains("X-Other") {
            assert!(rec.header_values("X-Other").is_empty(), "{}", shown(&rec));
        }
    }
}

// Proves: an upstream answer framed by chunked coding that also carries a
// Content-Length reaches the client whole, framed once: the Content-Length
// goes (RFC 9112 6.3), so the client never reads a truncated body or the
// rest of it as the next response.
#[test]
fn a_content_length_beside_chunked_coding_in_an_answer_is_dropped() {
    let body = "x".repeat(63);
    let chunked = format!("3f\r\n{body}\r\n0\r\n\r\n");
    let up = upstream(move |req| {
        let length = if req.path() == "/public/longer" {
            3
        } else {
            100
        };
        Reply::raw(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"
        ))
    });
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    for path in ["/public/longer", "/public/shorter"] {
        let r = sc.get(path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        assert_eq!(r.text(), "x".repeat(63), "{path}: {}", r.describe());
        assert_ne!(r.header("Content-Length"), Some("3"), "{path}");
        assert_ne!(r.header("Content-Length"), Some("100"), "{path}");
    }
    // The connection is still in step: the next answer is the next request's.
    assert_eq!(sc.get("/public/shorter", None).text(), "x".repeat(63));
}

// Proves: hop-by-hop fields of the upstream's answer, and the field its
// Connection names, never reach the client; end-to-end fields do.
#[test]
fn hop_by_hop_response_headers_from_the_upstream_do_not_reach_the_client() {
    let up = upstream(|_| {
        Reply::status(200)
            .header("Connection", "X-Secret")
            .header("X-Secret", "s3cr3t")
            .header("Keep-Alive", "timeout=77, max=7")
            .header("Proxy-Connection", "keep-alive")
            .header("X-Visible", "yes")
            .body("answer")
    });
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    let r = sc.get("/public/answer", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "answer");
    assert_eq!(r.header("X-Visible"), Some("yes"), "{}", r.describe());
    for name in ["X-Secret", "Keep-Alive", "Proxy-Connection"] {
        assert!(
            r.header(name).is_none(),
            "{name} reached the client: {}",
            r.describe()
        );
    }
    for (n, v) in &r.headers {
        assert!(
            !(n.eq_ignore_ascii_case("connection") && v.to_ascii_lowercase().contains("x-secret")),
            "the upstream's Connection reached the client: {}",
            r.describe()
        );
    }
}

// ---- Expect: 100-continue ---------------------------------------------------

// Proves: an authorized upload with Expect: 100-continue gets 100 Continue
// (a client that waits for it is not left hanging) and its body arrives whole.
#[test]
fn expect_100_continue_on_an_authorized_upload_gets_100_and_the_body_arrives_whole() {
    const LEN: usize = 256 << 10;
    let up = upstream(|req| Reply::status(200).body(format!("got {}", req.body_len)));
    let (sc, tok) = start(&up, json!({}));
    let mut s = connect(sc.port());
    write!(
        s,
        "POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {LEN}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        access(&tok)
    )
    .expect("write the head");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (head, rest) = read_head(&mut s).expect("100 Continue within 3 s");
    assert!(
        head.starts_with("HTTP/1.1 100"),
        "the first answer to a head with Expect must be 100 Continue: {head}"
    );
    s.write_all(&pattern(0, LEN)).expect("write the body");
    let r = read_response(&mut s, rest).expect("the final answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), format!("got {LEN}"));
    let rec = seen_on(&up, "/api/upload").pop().expect("forwarded");
    assert_alice(&rec, &tok);
    assert_eq!(rec.body_len, LEN as u64);
    assert_eq!(rec.body, pattern(0, LEN));
}

// Proves: without a token, a head with Expect: 100-continue on a kept-alive
// connection is answered 401 at once (no 100, no wait for the body) and
// nothing is forwarded.
#[test]
fn expect_100_continue_without_a_token_is_401_on_the_head_alone() {
    let up = upstream(ok);
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    let mut s = connect(sc.port());
    s.write_all(
        b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .expect("write the head");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (head, rest) = read_head(&mut s).expect("an answer to the head alone within 3 s");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(&rest);
    let r = read_response(&mut s, buf).expect("the 401");
    assert_error(&r, 401, "missing_token");
    assert!(r.header("X-Request-Id").is_some(), "{}", r.describe());
    sentinel(&sc);
    assert!(
        seen_on(&up, "/api/upload").is_empty(),
        "{:?}",
        shown_all(&up)
    );
}

// ---- HTTP/1.0 ---------------------------------------------------------------

// Proves: an HTTP/1.0 request without keep-alive is answered and the
// connection is then closed by sessiongate.
#[test]
fn http_1_0_without_keep_alive_is_answered_and_closed() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let mut s = connect(sc.port());
    write!(
        s,
        "GET /api/old HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        access(&tok)
    )
    .expect("write");
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(3));
    assert!(
        closed,
        "still open 3 s after an HTTP/1.0 answer: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let r = client::parse_response(&bytes, true)
        .expect("parses")
        .expect("a complete answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "ok");
    assert_alice(&seen_on(&up, "/api/old").pop().expect("forwarded"), &tok);
}

// Proves: HTTP/1.0 with Connection: keep-alive keeps the connection: the
// answer says keep-alive, is length-framed, and a second request is served.
#[test]
fn http_1_0_keep_alive_serves_two_requests_on_one_connection() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let mut s = connect(sc.port());
    for path in ["/api/old-1", "/api/old-2"] {
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Connection: keep-alive\r\n\r\n",
            access(&tok)
        )
        .expect("write");
        let r = read_response(&mut s, Vec::new())
            .unwrap_or_else(|e| panic!("{path}: no answer on the kept-alive connection: {e}"));
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        assert_eq!(r.text(), "ok");
        assert!(
            r.header("Transfer-Encoding").is_none(),
            "chunked to an HTTP/1.0 client: {}",
            r.describe()
        );
        assert!(
            r.header("Connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("keep-alive")),
            "an HTTP/1.0 client keeps the connection only if told keep-alive: {}",
            r.describe()
        );
        assert_alice(&seen_on(&up, path).pop().expect("forwarded"), &tok);
    }
}

// ---- header names and order -------------------------------------------------

// Proves: header names reach the upstream spelled as the client sent them
// (legacy servers may be case-sensitive) and distinct headers keep their
// order, also around a hop-by-hop header removed from the middle (as browsers
// send Connection near the top).
#[test]
fn header_names_keep_their_spelling_and_order_on_the_way_upstream() {
    let up = upstream(ok);
    let (sc, tok) = start(&up, json!({}));
    let sent = [
        ("X-LeGaCy-Header", "one"),
        ("Connection", "close"),
        ("x-all-lower", "two"),
        ("X-ALL-UPPER", "three"),
        ("SOAPAction", "\"urn:x#y\""),
        ("X-Order-C", "c"),
        ("X-Order-A", "a"),
        ("X-Order-B", "b"),
        ("X-Dup", "1"),
        ("X-Dup", "2"),
    ];
    let mut req = Request::get("/api/case").bearer(&access(&tok));
    for (n, v) in sent {
        req = req.header(n, v);
    }
    let r = sc.send(req);
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = seen_on(&up, "/api/case").pop().expect("forwarded");
    let mut last = None;
    for (n, v) in sent.into_iter().filter(|(n, _)| *n != "Connection") {
        let at = rec
            .headers
            .iter()
            .enumerate()
            .position(|(i, (rn, rv))| rn == n && rv == v && last.is_none_or(|l| i > l))
            .unwrap_or_else(|| {
                panic!(
                    "{n}: {v} not forwarded as spelled, in order: {}",
                    shown(&rec)
                )
            });
        last = Some(at);
    }
}

// ---- streaming both ways ----------------------------------------------------

const BIG: usize = 64 << 20;
const PIECE: usize = 64 << 10;
/// How much sessiongate may grow while [`BIG`] bytes pass through it.
const RSS_GROWTH_KIB: u64 = 16 << 10;

// Proves: a 64 MiB chunked upload streams: the upstream reads its first MiB
// while the client still holds 56 MiB unsent, and the whole body arrives.
#[test]
fn a_64_mib_chunked_upload_reaches_the_upstream_while_the_client_still_sends() {
    let up = upstream(|req| Reply::status(200).body(format!("got {}", req.body_len)));
    let sc = SidecarConfig::new(&up.url(), json!({"upstream": {"request_timeout": "30s"}})).spawn();
    let mut s = connect(sc.port());
    s.write_all(
        b"POST /public/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n",
    )
    .expect("write the head");
    let mut sent = 0;
    while sent < BIG {
        if sent == 8 << 20 {
            assert!(
                up.wait_body_bytes(1 << 20, WAIT),
                "buffered: the upstream had {} body bytes, the client {} unsent",
                up.body_bytes(),
                BIG - sent
            );
        }
        let mut chunk = format!("{PIECE:x}\r\n").into_bytes();
        chunk.extend_from_slice(&pattern(sent as u64, PIECE));
        chunk.extend_from_slice(b"\r\n");
        s.write_all(&chunk).expect("write the body");
        sent += PIECE;
    }
    s.write_all(b"0\r\n\r\n").expect("write the last chunk");
    let r = read_response(&mut s, Vec::new()).expect("an answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), format!("got {BIG}"));
    let rec = seen_on(&up, "/public/upload").pop().expect("forwarded");
    assert_eq!(rec.body_len, BIG as u64, "the upload was cut");
    assert_eq!(rec.body, pattern(0, rec.body.len()));
}

// Proves: a 64 MiB chunked download reaches a slow client intact with
// backpressure: sessiongate's RSS stays far below the body size.
#[test]
fn a_64_mib_download_to_a_slow_client_streams_with_bounded_memory() {
    let up = upstream(|_| {
        Reply::status(200).stream(PIECE, BIG / PIECE, Duration::ZERO, Framing::Chunked)
    });
    let sc = SidecarConfig::new(&up.url(), json!({"upstream": {"request_timeout": "30s"}})).spawn();
    let base = sc.rss_kib();
    let mut s = connect(sc.port());
    s.write_all(b"GET /public/big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let (head, rest) = read_head(&mut s).expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A stalled client first: a proxy that buffers instead of pushing back grows now.
    thread::sleep(Duration::from_secs(1));
    let mut peak = sc.rss_kib();
    let mut wire = head.into_bytes();
    wire.extend_from_slice(&rest);
    let mut buf = vec![0u8; 256 << 10];
    let mut next_pause = 4 << 20;
    loop {
        let n = s.read(&mut buf).expect("read the body");
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
        if wire.len() >= next_pause {
            peak = peak.max(sc.rss_kib());
            thread::sleep(Duration::from_millis(100));
            next_pause += 4 << 20;
        }
    }
    let r = client::parse_response(&wire, true)
        .expect("parses")
        .expect("a complete answer");
    assert_eq!(r.body.len(), BIG, "the download was cut");
    assert!(r.body == pattern(0, BIG), "the download differs");
    assert!(
        peak < base + RSS_GROWTH_KIB,
        "RSS grew from {base} KiB to {peak} KiB while {BIG} bytes went to a slow client"
    );
}

// ---- WebSocket --------------------------------------------------------------

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request for `path`, with `auth` lines before the blank line.
fn ws_head(path: &str, auth: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Upgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

// Proves: an authorized WebSocket upgrade reaches the upstream with the
// identity headers, its 101 reaches the client, and bytes flow both ways.
#[test]
fn an_authorized_websocket_upgrade_is_forwarded_and_tunnels_both_ways() {
    let up = upstream(|req| {
        if req.path() == "/api/ws" {
            Reply::switching()
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        } else {
            ok(req)
        }
    });
    let (sc, tok) = start(&up, json!({}));
    let mut s = connect(sc.port());
    let auth = format!("Authorization: Bearer {}\r\n", access(&tok));
    s.write_all(ws_head("/api/ws", &auth).as_bytes())
        .expect("write");
    let (head, mut echoed) = read_head(&mut s).expect("an answer to the upgrade");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let rec = seen_on(&up, "/api/ws").pop().expect("forwarded");
    assert_alice(&rec, &tok);
    assert_eq!(rec.header("Upgrade"), Some("websocket"), "{}", shown(&rec));
    assert_eq!(
        rec.header("Sec-WebSocket-Key"),
        Some(WS_KEY),
        "{}",
        shown(&rec)
    );
    // Tunnel bytes, one MiB of them and something that looks like a request:
    // neither side may read them as HTTP.
    let mut sent = pattern(0, 1 << 20);
    sent.extend_from_slice(b"GET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut writer = s.try_clone().expect("clone");
    let to_send = sent.clone();
    let feeder = thread::spawn(move || writer.write_all(&to_send));
    let mut buf = vec![0u8; 65536];
    while echoed.len() < sent.len() {
        let n = s.read(&mut buf).expect("read the tunnel");
        assert!(n > 0, "the tunnel closed after {} bytes", echoed.len());
        echoed.extend_from_slice(&buf[..n]);
    }
    feeder.join().expect("feeder").expect("write the tunnel");
    assert!(echoed == sent, "the tunnel changed the bytes");
    sentinel(&sc);
    assert!(
        seen_on(&up, "/api/smuggled").is_empty(),
        "{:?}",
        shown_all(&up)
    );
}

// Proves: a WebSocket upgrade without a token is 401 and never reaches the upstream.
#[test]
fn a_websocket_upgrade_without_a_token_is_401_and_not_forwarded() {
    let up = upstream(|req| {
        if req.path() == "/api/ws" {
            Reply::switching()
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
        } else {
            ok(req)
        }
    });
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    let r = exchange(sc.port(), ws_head("/api/ws", "").as_bytes()).expect("an answer");
    assert_error(&r, 401, "missing_token");
    sentinel(&sc);
    assert!(seen_on(&up, "/api/ws").is_empty(), "{:?}", shown_all(&up));
}

// ---- upstream keep-alive ----------------------------------------------------

// Proves: requests on separate client connections reuse upstream connections
// (the upstream accepts far fewer connections than requests).
#[test]
fn sequential_requests_on_separate_client_connections_reuse_upstream_connections() {
    const N: usize = 40;
    let up = upstream(ok);
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    for i in 0..N {
        // Each on its own client connection, with `Connection: close`.
        let r = sc.get(&format!("/public/ka-{i}"), None);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(up.seen().len(), N);
    let accepted = up.connections();
    // A connection goes back to the pool a moment after its answer, so the
    // next request may race it; one connection per request is the failure.
    assert!(
        accepted <= N / 4,
        "{accepted} upstream connections for {N} sequential requests"
    );
}

// ---- server.header_read_timeout ---------------------------------------------

/// Opens a connection to `port`, writes `prefix`, then writes `trickle` one
/// byte every 100 ms (cycling) and returns how long until the server closed
/// it; panics if it is still open after 5 s or answers other than 408/400.
fn time_to_disconnect(port: u16, what: &str, prefix: &[u8], trickle: &[u8]) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(prefix).expect("write");
    let mut got = Vec::new();
    let mut closed = false;
    let mut next = trickle.iter().cycle();
    while t0.elapsed() < Duration::from_secs(5) {
        let (bytes, ended) = read_until_close(&mut s, Duration::from_millis(100));
        got.extend_from_slice(&bytes);
        if ended {
            closed = true;
            break;
        }
        if let Some(b) = next.next() {
            if s.write_all(&[*b]).is_err() {
                closed = true;
                break;
            }
        }
    }
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "{what}: still open after {took:?}: {text:?}");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 400"),
        "{what}: {text:?}"
    );
    took
}

// Proves: with header_read_timeout 1s, a client that stalls mid-head, sends
// nothing, or trickles its head is disconnected in about 1 s, on the client
// listener and the admin listener alike.
#[test]
fn slow_request_heads_are_disconnected_after_header_read_timeout_on_both_listeners() {
    let up = upstream(ok);
    let sc =
        SidecarConfig::new(&up.url(), json!({"server": {"header_read_timeout": "1s"}})).spawn();
    let half: &[u8] = b"GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ";
    let mut cases = Vec::new();
    for (listener, port) in [("client", sc.port()), ("admin", sc.admin_port())] {
        for (kind, prefix, trickle) in [
            ("half a head, then nothing", half, &b""[..]),
            ("nothing at all", &b""[..], &b""[..]),
            ("a head trickled a byte per 100 ms", half, &b"a"[..]),
        ] {
            let what = format!("{listener} listener, {kind}");
            cases.push(thread::spawn(move || {
                let took = time_to_disconnect(port, &what, prefix, trickle);
                (what, took)
            }));
        }
    }
    for case in cases {
        let (what, took) = case.join().expect("a case thread");
        assert!(
            took >= Duration::from_millis(500),
            "{what}: closed after {took:?}, before the timeout could run out"
        );
    }
    // The listeners still serve complete heads.
    assert_eq!(sc.get("/public/after", None).status, 200);
    assert_eq!(sc.admin_get("/healthz").status, 200);
}

// Proves: header_read_timeout bounds the head only: a complete head whose
// body arrives slowly (2.5 s) is forwarded whole.
#[test]
fn a_slow_body_after_a_complete_head_is_not_cut_by_header_read_timeout() {
    let up = upstream(|req| Reply::status(200).body(format!("got {}", req.body_len)));
    let sc =
        SidecarConfig::new(&up.url(), json!({"server": {"header_read_timeout": "1s"}})).spawn();
    let mut s = connect(sc.port());
    s.write_all(
        b"POST /public/slow-body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\
          Connection: close\r\n\r\n",
    )
    .expect("write the head");
    for b in b"0123456789" {
        thread::sleep(Duration::from_millis(250));
        s.write_all(&[*b]).expect("write the body");
    }
    let r = read_response(&mut s, Vec::new()).expect("an answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "got 10");
    assert_eq!(seen_on(&up, "/public/slow-body")[0].body, b"0123456789");
}

// ---- HTTP/2 from clients ----------------------------------------------------

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// An HTTP/2 client connection over `io`; its driver runs on a task.
async fn h2_over<T>(io: T) -> Result<H2, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// An h2c (prior knowledge) connection to 127.0.0.1:`port`.
async fn h2c(port: u16) -> Result<H2, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    h2_over(tcp).await
}

/// Sends `req` and reads the whole answer (bounded by [`WAIT`]).
async fn h2_send(send: &mut H2, req: http::Request<Full<Bytes>>) -> Result<Response, String> {
    let exchange = async {
        send.ready().await?;
        let answer = send.send_request(req).await?;
        let (parts, body) = answer.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Response {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        })
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {WAIT:?}")),
    }
}

fn h2_request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &'static str,
) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.header("x-custom", "h2")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a request")
}

/// What every request forwarded from HTTP/2 must look like upstream.
fn assert_forwarded_as_http_1_1(rec: &SeenRequest, host: &str, proto: &str) {
    assert_eq!(rec.version, "HTTP/1.1", "{}", shown(rec));
    assert_eq!(
        rec.header_values("Host"),
        [host],
        "Host from :authority: {}",
        shown(rec)
    );
    assert_eq!(
        rec.header_values("X-Forwarded-Proto"),
        [proto],
        "{}",
        shown(rec)
    );
    assert_eq!(rec.header_values("x-custom"), ["h2"], "{}", shown(rec));
    assert!(
        rec.headers.iter().all(|(n, _)| !n.starts_with(':')),
        "a pseudo-header went upstream: {}",
        shown(rec)
    );
}

fn h2_upstream() -> Scripted {
    upstream(|req| {
        Reply::status(200)
            .header("Keep-Alive", "timeout=5")
            .header("X-From", "upstream")
            .body(format!("got {} {}", req.method, req.body_len))
    })
}

// Proves: h2c prior knowledge with a token is served: two concurrent streams
// are forwarded as HTTP/1.1 with the identity, Host from :authority and the
// body, and the upstream's answers come back over HTTP/2.
#[test]
fn h2c_prior_knowledge_with_a_token_is_forwarded_as_http_1_1() {
    let up = h2_upstream();
    let (sc, tok) = start(&up, json!({}));
    let at = access(&tok);
    let (a, b) = block_on(async {
        let mut send = h2c(sc.port()).await.expect("an h2c connection");
        let mut second = send.clone();
        let a = h2_request(
            "POST",
            "http://app.example.test/api/h2?x=1",
            Some(&at),
            "h2 body",
        );
        let b = h2_request(
            "GET",
            "http://app.example.test/api/h2-second",
            Some(&at),
            "",
        );
        tokio::join!(h2_send(&mut send, a), h2_send(&mut second, b))
    });
    for (r, want) in [(a, "got POST 7"), (b, "got GET 0")] {
        let r = r.expect("an HTTP/2 answer");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.text(), want);
        assert_eq!(r.header("x-from"), Some("upstream"), "{}", r.describe());
        assert!(r.header("x-request-id").is_some(), "{}", r.describe());
    }
    let rec = seen_on(&up, "/api/h2").pop().expect("forwarded");
    assert_forwarded_as_http_1_1(&rec, "app.example.test", "http");
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.target, "/api/h2?x=1");
    assert_eq!(rec.body, b"h2 body");
    assert_eq!(rec.header_values("X-Forwarded-Host"), ["app.example.test"]);
    assert_alice(&rec, &tok);
    assert_alice(
        &seen_on(&up, "/api/h2-second").pop().expect("forwarded"),
        &tok,
    );
}

// Proves: over h2c a protected path without a token is the JSON 401 of SPEC 4
// (challenge and request id included) and is not forwarded.
#[test]
fn h2c_without_a_token_is_a_json_401_over_http2() {
    let up = h2_upstream();
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    let r = block_on(async {
        let mut send = h2c(sc.port()).await?;
        h2_send(
            &mut send,
            h2_request("GET", "http://127.0.0.1/api/h2", None, ""),
        )
        .await
    })
    .expect("an HTTP/2 answer");
    assert_error(&r, 401, "missing_token");
    assert!(r.header("x-request-id").is_some(), "{}", r.describe());
    sentinel(&sc);
    assert!(seen_on(&up, "/api/h2").is_empty(), "{:?}", shown_all(&up));
}

// Proves: an HTTP/2 request whose Host names another authority than its
// :authority, or whose :authority has a user name, is 400 and not forwarded
// (RFC 9113 8.3.1), as HTTP/1.1's absolute form is.
#[test]
fn h2c_with_a_host_other_than_its_authority_is_400() {
    let up = h2_upstream();
    let (sc, tok) = start(&up, json!({}));
    let at = access(&tok);
    let answers = block_on(async {
        let mut send = h2c(sc.port()).await?;
        let mut two_hosts = h2_request("GET", "http://good.example/api/h2-host", Some(&at), "");
        two_hosts
            .headers_mut()
            .insert("host", http::HeaderValue::from_static("evil.example:1234"));
        let a = h2_send(&mut send, two_hosts).await;
        let user = h2_request("GET", "http://u:p@good.example/api/h2-user", Some(&at), "");
        let b = h2_send(&mut send, user).await;
        let mut same = h2_request("GET", "http://good.example/api/h2-same", Some(&at), "");
        same.headers_mut()
            .insert("host", http::HeaderValue::from_static("GOOD.example"));
        let c = h2_send(&mut send, same).await;
        Ok::<_, String>([a, b, c])
    })
    .expect("an h2c connection");
    let [two_hosts, user, same] = answers;
    assert_error(&two_hosts.expect("an answer"), 400, "bad_request");
    // hyper's client may refuse to send a user name itself; if it is sent, it is refused.
    if let Ok(r) = user {
        assert_error(&r, 400, "bad_request");
    }
    assert_eq!(same.expect("an answer").status, 200);
    sentinel(&sc);
    for path in ["/api/h2-host", "/api/h2-user"] {
        assert!(
            seen_on(&up, path).is_empty(),
            "{path}: {:?}",
            shown_all(&up)
        );
    }
}

// Proves: a Host that is more than a host and port (a path, a user name, a
// space) is 400 and not forwarded: an upstream building URLs from it must
// not get them (RFC 9112 3.2).
#[test]
fn a_host_that_is_not_a_host_and_port_is_400() {
    let up = upstream(ok);
    let sc = SidecarConfig::new(&up.url(), json!({})).spawn();
    for (i, host) in [
        "a b",
        "a/b@c",
        "user@a.example",
        "a.example/x",
        "a?b",
        "a#b",
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/public/host-{i}");
        let r = client::exchange(
            sc.port(),
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("an answer");
        assert_error(&r, 400, "bad_request");
    }
    for host in ["a.example", "a.example:8080", "127.0.0.1:1", "[::1]:8080"] {
        let r = client::exchange(
            sc.port(),
            format!("GET /public/host-ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("an answer");
        assert_eq!(r.status, 200, "{host}: {}", r.describe());
    }
    sentinel(&sc);
    for i in 0..6 {
        let path = format!("/public/host-{i}");
        assert!(seen_on(&up, &path).is_empty(), "{path} forwarded");
    }
}

/// One HTTP/2 frame: type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

// Proves: an h2c connection without a request for header_read_timeout is
// closed, as an idle HTTP/1 one is: a bare preface, PINGs, or a header block
// that never ends (HEADERS without END_HEADERS) cannot hold it open, and the
// unfinished request never reaches the upstream.
#[test]
fn an_h2c_connection_without_a_request_is_closed_after_the_header_read_timeout() {
    let up = upstream(|req| {
        if req.path() == "/public/slow" {
            Reply::status(200)
                .delay(Duration::from_millis(2500))
                .body("slow")
        } else {
            ok(req)
        }
    });
    let sc =
        SidecarConfig::new(&up.url(), json!({"server": {"header_read_timeout": "1s"}})).spawn();
    // A request in progress for longer than the timeout is not idleness.
    let slow = block_on(async {
        let mut send = h2c(sc.port()).await?;
        let req = h2_request("GET", "http://127.0.0.1/public/slow", None, "");
        h2_send(&mut send, req).await
    })
    .expect("an HTTP/2 answer");
    assert_eq!(slow.status, 200, "{}", slow.describe());
    assert_eq!(slow.text(), "slow");
    let preface = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &h2_frame(0x4, 0, 0, &[]),
    ]
    .concat();
    // :method GET, :scheme http, :path / from HPACK's static table; the
    // header block is never ended.
    let unfinished = h2_frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84]);
    let ping = h2_frame(0x6, 0, 0, &[0; 8]);
    for (case, after) in [
        ("bare preface", vec![]),
        ("unfinished header block", unfinished),
    ] {
        let mut s = connect(sc.port());
        s.write_all(&preface).expect("preface");
        s.write_all(&after).expect("frames");
        let started = Instant::now();
        let (_, closed) = read_until_close(&mut s, Duration::from_secs(6));
        assert!(closed, "{case}: still open after {:?}", started.elapsed());
    }
    // PINGs every 300 ms are not requests.
    let mut s = connect(sc.port());
    s.write_all(&preface).expect("preface");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(6) && !closed {
        if s.write_all(&ping).is_err() {
            closed = true;
            break;
        }
        closed = read_until_close(&mut s, Duration::from_millis(300)).1;
    }
    assert!(
        closed,
        "PINGs held the connection for {:?}",
        started.elapsed()
    );
    sentinel(&sc);
    assert!(seen_on(&up, "/").is_empty(), "{:?}", shown_all(&up));
}

// Proves: with server.http2 false an h2c preface is refused (closed or 400),
// never served, while HTTP/1.1 still is.
#[test]
fn h2c_is_refused_when_http2_is_off() {
    let up = h2_upstream();
    let (sc, tok) = start(&up, json!({"server": {"http2": false}}));
    let at = access(&tok);
    let r = block_on(async {
        let mut send = h2c(sc.port()).await?;
        h2_send(
            &mut send,
            h2_request("GET", "http://127.0.0.1/api/h2", Some(&at), ""),
        )
        .await
    });
    assert!(r.is_err(), "HTTP/2 served with http2 off: {r:?}");
    let mut s = connect(sc.port());
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("write the preface");
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text:?}"
    );
    assert_eq!(sc.get("/public/h1", None).status, 200);
    assert!(seen_on(&up, "/api/h2").is_empty(), "{:?}", shown_all(&up));
}

/// A sidecar terminating TLS with a certificate from `ca`, plus `overrides`.
fn tls_sidecar(up: &Scripted, ca: &TestCa, overrides: Value) -> (Sidecar, Value) {
    let cert = ca.server_cert();
    let mut cfg = SidecarConfig::new(&up.url(), overrides);
    let cert_file = cfg.write_file("tls.crt", &cert.cert_pem);
    let key_file = cfg.write_file("tls.key", &cert.key_pem);
    cfg.config["server"]["tls"] = json!({"cert_file": cert_file, "key_file": key_file});
    let sc = cfg.spawn();
    // The helper speaks plain HTTP/1.1: log in over TLS by hand instead.
    let tok = block_on(async {
        let (mut tls, _) = tls_connect(sc.port(), ca, &[b"http/1.1"]).await;
        let body = r#"{"username":"alice","password":"pw"}"#;
        let req = format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(req.as_bytes())
            .await
            .expect("write the login");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let r = client::parse_response(&out, true)
            .expect("parses")
            .expect("a login answer");
        assert_eq!(r.status, 200, "login over TLS: {}", r.describe());
        r.json()
    });
    (sc, tok)
}

/// A TLS connection to 127.0.0.1:`port` as `localhost`, trusting `ca`,
/// offering `alpn`; the stream and the protocol the server picked.
async fn tls_connect(
    port: u16,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("CA cert"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("a TLS handshake");
    let picked = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (tls, picked)
}

// Proves: over TLS, ALPN negotiates h2 and an HTTP/2 request with a token is
// forwarded as HTTP/1.1 marked https.
#[test]
fn tls_negotiates_h2_by_alpn_and_serves_it() {
    let up = h2_upstream();
    let ca = TestCa::new("sessiongate h2 test CA");
    let (sc, tok) = tls_sidecar(&up, &ca, json!({}));
    let at = access(&tok);
    let (picked, r) = block_on(async {
        let (tls, picked) = tls_connect(sc.port(), &ca, &[b"h2", b"http/1.1"]).await;
        let mut send = h2_over(tls).await.expect("an h2 connection");
        let r = h2_send(
            &mut send,
            h2_request("GET", "https://localhost/api/h2-tls", Some(&at), ""),
        )
        .await;
        (picked, r)
    });
    assert_eq!(picked.as_deref(), Some(&b"h2"[..]), "ALPN did not pick h2");
    let r = r.expect("an HTTP/2 answer");
    assert_eq!(r.status, 200, "{}", r.describe());
    let rec = seen_on(&up, "/api/h2-tls").pop().expect("forwarded");
    assert_forwarded_as_http_1_1(&rec, "localhost", "https");
    assert_alice(&rec, &tok);
}

// Proves: with server.http2 false, ALPN picks http/1.1 even when the client
// prefers h2, and HTTP/1.1 is served over that connection.
#[test]
fn tls_alpn_picks_http_1_1_when_http2_is_off() {
    let up = h2_upstream();
    let ca = TestCa::new("sessiongate h1 test CA");
    let (sc, tok) = tls_sidecar(&up, &ca, json!({"server": {"http2": false}}));
    let at = access(&tok);
    let (picked, r) = block_on(async {
        let (tls, picked) = tls_connect(sc.port(), &ca, &[b"h2", b"http/1.1"]).await;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("an HTTP/1.1 connection");
        tokio::spawn(conn);
        let req = h2_request("GET", "/api/h1-tls", Some(&at), "");
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert("host", http::HeaderValue::from_static("localhost"));
        let answer = tokio::time::timeout(
            WAIT,
            send.send_request(http::Request::from_parts(parts, body)),
        )
        .await
        .expect("an answer in time")
        .expect("an HTTP/1.1 answer");
        (picked, answer.status().as_u16())
    });
    assert_eq!(
        picked.as_deref(),
        Some(&b"http/1.1"[..]),
        "ALPN did not pick http/1.1"
    );
    assert_eq!(r, 200);
    let rec = seen_on(&up, "/api/h1-tls").pop().expect("forwarded");
    assert_eq!(rec.header_values("X-Forwarded-Proto"), ["https"]);
    assert_alice(&rec, &tok);
}

// ---- graceful drain ---------------------------------------------------------

/// A sidecar with `shutdown_grace: 5s` in front of an upstream that answers
/// `/public/slow` and `/api/slow` after 2 s and everything else at once.
fn draining_pair() -> (Scripted, Sidecar, Value) {
    let up = upstream(|req| {
        if req.path().ends_with("/slow") {
            Reply::status(200)
                .delay(Duration::from_secs(2))
                .body("slow done")
        } else {
            ok(req)
        }
    });
    let (sc, tok) = start(&up, json!({"server": {"shutdown_grace": "5s"}}));
    (up, sc, tok)
}

// Proves: on SIGTERM an in-flight request finishes 200, an idle kept-alive
// connection is closed before it does, new connections are not served, and
// /readyz says 503 meanwhile; then exit 0.
#[test]
fn sigterm_drains_in_flight_closes_idle_refuses_new_and_reports_not_ready() {
    let (up, mut sc, _) = draining_pair();
    let port = sc.port();
    let mut idle = connect(port);
    idle.write_all(b"GET /public/first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    let first = read_response(&mut idle, Vec::new()).expect("an answer");
    assert_eq!(first.status, 200, "{}", first.describe());
    let slow = thread::spawn(move || {
        let r = Request::get("/public/slow").send(port);
        (r, Instant::now())
    });
    wait_path(&up, "/public/slow");
    sc.sigterm();
    let ready = sc.wait_readyz(503, Duration::from_secs(1));
    assert!(
        !slow.is_finished(),
        "the slow request ended before /readyz said 503"
    );
    assert_eq!(ready.status, 503);
    let (bytes, closed) = read_until_close(&mut idle, Duration::from_millis(1500));
    let idle_closed = Instant::now();
    assert!(
        closed,
        "the idle kept-alive connection is still open 1.5 s into the drain: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let fresh = Request::get("/public/fresh").try_send(port);
    assert!(
        fresh.is_err(),
        "a new connection was served during the drain: {:?}",
        fresh.map(|r| r.describe())
    );
    let (r, slow_done) = slow.join().expect("the slow request");
    assert_eq!(
        r.status,
        200,
        "the in-flight request was cut: {}",
        r.describe()
    );
    assert_eq!(r.text(), "slow done");
    assert!(
        idle_closed < slow_done,
        "the idle connection was closed only when the drain ended"
    );
    assert_eq!(sc.wait_exit(WAIT), Some(Some(0)), "{}", sc.logs());
    assert!(
        seen_on(&up, "/public/fresh").is_empty(),
        "{:?}",
        shown_all(&up)
    );
}

// Proves: on SIGTERM an HTTP/2 connection gets GOAWAY: its in-flight stream
// finishes 200 while a new stream on it is no longer served.
#[test]
fn sigterm_sends_goaway_on_http2_and_finishes_the_in_flight_stream() {
    let (up, sc, tok) = draining_pair();
    let at = access(&tok);
    let (slow, late) = block_on(async {
        let mut send = h2c(sc.port()).await.expect("an h2c connection");
        let mut late_send = send.clone();
        let slow_request = h2_request("GET", "http://127.0.0.1/api/slow", Some(&at), "");
        let slow = tokio::spawn(async move { h2_send(&mut send, slow_request).await });
        let deadline = Instant::now() + WAIT;
        while seen_on(&up, "/api/slow").is_empty() {
            assert!(
                Instant::now() < deadline,
                "the slow stream never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sc.sigterm();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = h2_send(
            &mut late_send,
            h2_request("GET", "http://127.0.0.1/api/late", Some(&at), ""),
        )
        .await;
        (slow.await.expect("the slow stream"), late)
    });
    let slow = slow.expect("the in-flight stream's answer");
    assert_eq!(slow.status, 200, "{}", slow.describe());
    assert_eq!(slow.text(), "slow done");
    assert!(
        late.as_ref().is_err(),
        "a new stream was served after GOAWAY: {:?}",
        late.map(|r| r.status)
    );
    assert!(seen_on(&up, "/api/late").is_empty(), "{:?}", shown_all(&up));
}
