//! What passes through unchanged: the upstream's answers (SPEC 4.1) byte for
//! byte, and bodies streamed both ways with bounded memory in the sidecar.
//! The upstream is the scripted one (tests/common/scripted.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::scripted::{pattern, Framing, Reply, Scripted, SeenRequest};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// Sends `bytes` to `port` and reads until the peer closes (or 5 s).
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

// ---- the scripted upstream itself ------------------------------------------

#[test]
fn the_scripted_upstream_records_raw_requests_and_answers_as_scripted() {
    let up = Scripted::start(|req: &SeenRequest| match req.path() {
        "/interim" => Reply::status(200)
            .interim(100, &[])
            .interim(103, &[("Link", "</a.css>; rel=preload")])
            .body("done"),
        "/stream" => Reply::status(200).stream(5, 3, Duration::from_millis(1), Framing::Chunked),
        "/raw" => Reply::raw("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"),
        "/tunnel" => Reply::switching().header("Upgrade", "x"),
        _ => Reply::status(418)
            .header("x-LOWER", "1")
            .header("X-Dup", "a")
            .header("X-Dup", "b")
            .body("teapot"),
    });
    let text = raw_exchange(
        up.port,
        b"POST /a/%2e/b?q=%41 HTTP/1.1\r\nHost: h\r\nx_Odd: v\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&text),
        "HTTP/1.1 418 Status\r\nx-LOWER: 1\r\nX-Dup: a\r\nX-Dup: b\r\nContent-Length: 6\r\nConnection: close\r\n\r\nteapot"
    );
    let seen = up.wait_seen(1, WAIT);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/a/%2e/b?q=%41");
    assert_eq!(seen[0].headers[1], ("x_Odd".to_owned(), "v".to_owned()));
    assert_eq!(seen[0].body, b"abc");

    let text = raw_exchange(
        up.port,
        b"GET /interim HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&text),
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone"
    );
    let text = raw_exchange(
        up.port,
        b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let expected_body = pattern(0, 15);
    let mut expected =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in expected_body.chunks(5) {
        expected.extend_from_slice(b"5\r\n");
        expected.extend_from_slice(piece);
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(text, expected);
    let text = raw_exchange(up.port, b"GET /raw HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(text, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab");

    let mut s = TcpStream::connect(("127.0.0.1", up.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /tunnel HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
    let mut got = vec![0u8; head.len()];
    s.read_exact(&mut got).expect("101 head");
    assert_eq!(got, head);
    s.write_all(b"ping").expect("write");
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping");

    raw_exchange(up.port, b"\x16\x03\x01garbage\r\n\r\n");
    let seen = up.wait_seen(6, WAIT);
    assert_eq!(seen[5].method, "<unparsable>", "{seen:?}");
}

// ---- SPEC 4.1: a failed login is the upstream's answer ----------------------

/// Hop-by-hop or framing headers a proxy may rewrite; everything else the
/// upstream sends must arrive as sent.
const REFRAMED: [&str; 4] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

/// The upstream's end-to-end headers, in order, names lower-cased (HTTP names
/// are case-insensitive; an HTTP/1 library may print them either way).
fn end_to_end(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| !REFRAMED.contains(&n.as_str()))
        .collect()
}

fn login_sidecar(up: &Scripted) -> Sidecar {
    SidecarConfig::new(&up.url(), json!({})).spawn()
}

/// Status, headers in order, body.
type UpstreamAnswer = (u16, Vec<(&'static str, &'static str)>, &'static [u8]);

#[test]
fn a_failed_login_is_passed_through_unchanged() {
    let answers: Vec<UpstreamAnswer> = vec![
        (
            401,
            vec![
                ("Content-Type", "text/html; charset=iso-8859-1"),
                ("WWW-Authenticate", "Basic realm=\"legacy\""),
                ("Set-Cookie", "tries=3; Path=/"),
                ("Set-Cookie", "lock=0; Path=/"),
                ("X-Legacy-Reason", "bad password"),
                ("x-lower", "kept"),
            ],
            b"<b>Wrong password.</b>\xe9",
        ),
        (
            // A 2xx without the subject header (an MFA step): still the upstream's.
            200,
            vec![("Content-Type", "application/json"), ("X-Mfa", "required")],
            br#"{"mfa":"totp"}"#,
        ),
        (
            302,
            vec![
                ("Location", "/sso/start?x=%2F"),
                ("Cache-Control", "no-cache"),
            ],
            b"",
        ),
        (429, vec![("Retry-After", "7")], b"slow down"),
    ];
    for (status, headers, body) in answers {
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let body = body.to_vec();
        let (h, b) = (owned.clone(), body.clone());
        let up = Scripted::start(move |_| {
            h.iter()
                .fold(Reply::status(status), |r, (n, v)| r.header(n, v))
                .body(b.clone())
        });
        let sc = login_sidecar(&up);
        let sent = br#"{"username":"alice","password":"nope","extra":[1,2]}"#;
        let r = sc.send(
            Request::post("/v1/auth/login")
                .header("Content-Type", "application/json")
                .header("X-Client-Thing", "v")
                .body(sent.to_vec()),
        );
        assert_eq!(r.status, status, "{}", r.describe());
        assert_eq!(r.body, body, "the body changed: {}", r.describe());
        let got: Vec<(String, String)> = end_to_end(&r.headers)
            .into_iter()
            .filter(|(n, _)| n != "x-request-id" && n != "date" && n != "server")
            .collect();
        assert_eq!(got, end_to_end(&owned), "headers changed: {}", r.describe());
        let as_json = serde_json::from_slice::<Value>(&r.body).ok();
        assert!(as_json.is_none_or(|v| v.get("access_token").is_none()));
        // The upstream got the login as the client sent it.
        let seen = up.wait_seen(1, WAIT);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].target, "/login");
        assert_eq!(seen[0].body, sent);
        assert_eq!(seen[0].header("X-Client-Thing"), Some("v"));
        assert_eq!(sc.metric("sessiongate_sessions_created_total", &[]), 0.0);
    }
}

// ---- streaming with bounded memory -------------------------------------------

const PIECE: usize = 64 << 10;
const PIECES: usize = 3200; // 200 MiB
const TOTAL: u64 = (PIECE * PIECES) as u64;

/// How much the sidecar may grow while 200 MiB pass through it.
const RSS_GROWTH_KIB: u64 = 32 << 10;

fn streaming_sidecar(up: &Scripted) -> Sidecar {
    SidecarConfig::new(&up.url(), json!({"upstream": {"request_timeout": "60s"}})).spawn()
}

#[test]
fn a_200_mib_download_streams_through_with_bounded_memory() {
    let up = Scripted::start(|_| {
        Reply::status(200).stream(PIECE, PIECES, Duration::ZERO, Framing::Length)
    });
    let sc = streaming_sidecar(&up);
    let base = sc.rss_kib();
    let mut s = TcpStream::connect(("127.0.0.1", sc.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /public/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let (head, mut pending) = client::read_head(&mut s).expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {TOTAL}")),
        "{head}"
    );
    // A slow client first: a proxy that buffers instead of pushing back grows now.
    std::thread::sleep(Duration::from_millis(1000));
    let mut peak = sc.rss_kib();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; PIECE];
    loop {
        if !pending.is_empty() {
            assert_eq!(
                pending,
                pattern(got, pending.len()),
                "body differs at {got}"
            );
            got += pending.len() as u64;
            pending.clear();
        }
        if got % (4 << 20) < PIECE as u64 {
            peak = peak.max(sc.rss_kib());
        }
        let n = s.read(&mut buf).expect("read the body");
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, TOTAL, "the download was cut");
    assert!(
        peak < base + RSS_GROWTH_KIB,
        "RSS grew from {base} KiB to {peak} KiB while streaming {TOTAL} bytes"
    );
}

#[test]
fn a_200_mib_upload_streams_through_with_bounded_memory() {
    let up = Scripted::start(|_| Reply::status(200).body("stored"));
    let sc = streaming_sidecar(&up);
    let base = sc.rss_kib();
    let mut s = TcpStream::connect(("127.0.0.1", sc.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut peak = base;
    for i in 0..PIECES {
        s.write_all(&pattern((i * PIECE) as u64, PIECE))
            .expect("write the body");
        if i % 64 == 0 {
            peak = peak.max(sc.rss_kib());
        }
    }
    let (head, _) = client::read_head(&mut s).expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = up.wait_seen(1, WAIT);
    assert_eq!(seen[0].body_len, TOTAL, "the upload was cut");
    assert_eq!(seen[0].body, pattern(0, seen[0].body.len()));
    assert!(
        peak < base + RSS_GROWTH_KIB,
        "RSS grew from {base} KiB to {peak} KiB while streaming {TOTAL} bytes up"
    );
}
