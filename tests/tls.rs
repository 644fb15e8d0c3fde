//! TLS on both sides (SPEC 2 `server.tls`, `upstream.url: https://`,
//! `upstream.ca_file`): certificates from a test CA (tests/common/tls.rs), a
//! real rustls client, and a real TLS upstream.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::tls::{https_get, provider, ServerCert, TestCa};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

/// A TLS upstream on 127.0.0.1: answers every request `200 tls-upstream`
/// (with `X-Session-Subject: user-tls`), one request per connection.
/// Returns its port and a count of the TCP connections it accepted.
fn tls_upstream(cert: &ServerCert) -> (u16, Arc<AtomicUsize>) {
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(server) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(server, conn);
                let Some(head) = read_head(&mut tls) else {
                    return; // handshake refused by the client, or no request
                };
                // Read the body too: closing with unread data would reset the
                // connection under the answer.
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if tls.read_exact(&mut body).is_err() {
                    return;
                }
                // Names a user too, so a login forwarded here succeeds.
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nx-session-subject: user-tls\r\ncontent-length: 12\r\nconnection: close\r\n\r\ntls-upstream",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, accepted)
}

fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// A sidecar whose upstream is `https://127.0.0.1:<port>`, trusting `ca_file`
/// and, as the system's roots, only `system_ca` (via SSL_CERT_FILE).
fn sidecar_for_tls_upstream(port: u16, ca_file: &TestCa, system_ca: &TestCa) -> Sidecar {
    let mut cfg = SidecarConfig::new(&format!("https://127.0.0.1:{port}"), json!({}));
    let ca_path = cfg.write_file("upstream-ca.pem", &ca_file.pem);
    let system_path = cfg.write_file("system-roots.pem", &system_ca.pem);
    cfg.config["upstream"]["ca_file"] = json!(ca_path);
    cfg.env = vec![("SSL_CERT_FILE", Some(system_path)), ("SSL_CERT_DIR", None)];
    cfg.spawn()
}

#[test]
fn server_tls_terminates_https_on_the_listener_and_says_so_upstream() {
    let up = Upstream::start();
    let ca = TestCa::new("sessiongate test CA");
    let cert = ca.server_cert();
    let mut cfg = SidecarConfig::new(&up.url(), json!({}));
    let cert_file = cfg.write_file("tls.crt", &cert.cert_pem);
    let key_file = cfg.write_file("tls.key", &cert.key_pem);
    cfg.config["server"]["tls"] = json!({"cert_file": cert_file, "key_file": key_file});
    let sc = cfg.spawn();

    let answer = https_get(sc.port(), &ca.pem, "/public/over-tls").expect("an HTTPS answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up
        .wait_for(Duration::from_secs(5), |r| r.path == "/public/over-tls")
        .expect("the request reached the upstream");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));

    // Plain HTTP on the TLS listener gets no HTTP answer.
    let plain = Request::get("/public/plain").try_send(sc.port());
    assert!(
        plain.as_ref().map_or(true, |r| r.status == 0),
        "plain HTTP was answered: {:?}",
        plain.map(|r| r.status)
    );
    // A client that does not trust the certificate refuses the handshake.
    let other = TestCa::new("another CA");
    assert!(https_get(sc.port(), &other.pem, "/public/x").is_err());
}

#[test]
fn an_https_upstream_is_verified_against_ca_file() {
    let ca = TestCa::new("upstream CA");
    let (port, _) = tls_upstream(&ca.server_cert());
    let unrelated = TestCa::new("unrelated system root");
    let sc = sidecar_for_tls_upstream(port, &ca, &unrelated);
    let r = sc.get("/public/x", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "tls-upstream");
    // The login call goes over the same verified connection settings.
    let login = sc.login_response("alice", "pw");
    assert_eq!(login.status, 200, "{}", login.describe());
    let me = sc.get(PRIVATE, Some(&s(&login.json(), "access_token")));
    assert_eq!(me.status, 200, "{}", me.describe());
}

#[test]
fn the_system_roots_still_count_when_ca_file_is_set() {
    // SPEC 2: "system + optional ca_file". The upstream's certificate comes
    // from a CA that only the system store (SSL_CERT_FILE) knows.
    let system = TestCa::new("system CA");
    let (port, _) = tls_upstream(&system.server_cert());
    let private = TestCa::new("private CA in ca_file");
    let sc = sidecar_for_tls_upstream(port, &private, &system);
    let r = sc.get("/public/x", None);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "tls-upstream");
}

#[test]
fn an_https_upstream_signed_by_an_unknown_ca_is_502() {
    let stranger = TestCa::new("nobody trusts this CA");
    let (port, accepted) = tls_upstream(&stranger.server_cert());
    let sc = sidecar_for_tls_upstream(port, &TestCa::new("ca_file CA"), &TestCa::new("system CA"));
    let r = sc.get("/public/x", None);
    assert_error(&r, 502, "upstream_unavailable");
    // It was the certificate, not an unreachable upstream.
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "no connection reached the upstream"
    );
}

#[test]
fn a_ca_file_that_is_not_a_certificate_bundle_is_a_config_error_naming_it() {
    let cfg = SidecarConfig::new("https://localhost:1", json!({}));
    let bad = cfg.write_file("not-a-ca.pem", "hello\n");
    let key = cfg.write_file("a-key.pem", &cfg.key_pem());
    for (file, why) in [(bad, "no certificate"), (key, "PRIVATE KEY")] {
        let mut c = SidecarConfig::new("https://localhost:1", json!({}));
        c.config["upstream"]["ca_file"] = json!(file);
        let path = c.write();
        let out = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("upstream.ca_file") && stderr.contains(why),
            "{stderr}"
        );
    }
}

/// Proves a rewritten `upstream.ca_file` is used without a restart (SPEC 1):
/// the upstream's CA, added to the file, makes it trusted.
#[test]
fn a_changed_ca_file_is_reloaded() {
    let ca = TestCa::new("upstream CA");
    let (port, _) = tls_upstream(&ca.server_cert());
    let other = TestCa::new("some other CA");
    let sc = sidecar_for_tls_upstream(port, &other, &TestCa::new("system CA"));
    assert_error(&sc.get("/public/x", None), 502, "upstream_unavailable");
    sc.cfg
        .write_file("upstream-ca.pem", &format!("{}{}", other.pem, ca.pem));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sc.get("/public/x", None);
        if r.status == 200 {
            assert_eq!(r.text(), "tls-upstream");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new CA file was never used: {}\n{}",
            r.describe(),
            sc.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
}
