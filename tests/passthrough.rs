//! What passes through unchanged: the upstream's answers (SPEC 4.1) byte for
//! byte, and bodies streamed both ways with bounded memory in the sidecar.
//! The upstream is the scripted one (tests/common/scripted.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::scripted::{pattern, Framing, Reply, Scripted, SeenRequest};

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
