//! What sessiongate does when the things around it fail: an upstream that
//! refuses, stalls or dies mid-body, a SIGTERM with work in flight, a SQLite
//! file that is locked, read-only or deleted, and clients that dribble bytes.
//! In each case: a clear error or a cut connection, never a success that is
//! not one, and everyone else still served.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

// ---- a misbehaving upstream -------------------------------------------------

/// An upstream that reads each request head and then runs `script` on the socket.
fn bad_upstream(script: fn(&mut TcpStream)) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::Acquire) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                script(&mut conn);
            });
        }
    });
    (port, stop)
}

fn sidecar_for(port: u16, overrides: Value) -> Sidecar {
    SidecarConfig::new(&format!("http://127.0.0.1:{port}"), overrides).spawn()
}

/// The raw bytes of one exchange, read until the server closes (or `limit`).
fn raw_exchange(port: u16, target: &str, limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

/// Whether `raw` is a complete 200 by its own framing (the client would
/// believe it got the whole body).
fn is_complete_200(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    if !head.starts_with("HTTP/1.1 200") {
        return false;
    }
    let lower = head.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    match lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => body.len() >= n,
        None => false,
    }
}

#[test]
fn an_upstream_that_closes_without_answering_is_502() {
    let (port, _stop) = bad_upstream(|_| {});
    let sc = sidecar_for(port, json!({}));
    let r = sc.send(Request::get("/public/x"));
    assert_error(&r, 502, "upstream_unavailable");
}

#[test]
fn an_upstream_that_dies_mid_body_never_yields_a_complete_200() {
    let (port, _stop) = bad_upstream(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        let _ = s.write_all(&[b'x'; 4000]);
        let _ = s.flush();
        thread::sleep(Duration::from_millis(100));
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let sc = sidecar_for(port, json!({}));
    let raw = raw_exchange(sc.port(), "/public/big", Duration::from_secs(10));
    assert!(
        !is_complete_200(&raw),
        "a truncated body was passed off as complete: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(300)])
    );
}

#[test]
fn an_upstream_that_dies_mid_chunked_body_never_yields_a_final_chunk() {
    let (port, _stop) = bad_upstream(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let _ = s.write_all(b"400\r\n");
        let _ = s.write_all(&[b'y'; 1024]);
        let _ = s.write_all(b"\r\n");
        let _ = s.flush();
        thread::sleep(Duration::from_millis(100));
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let sc = sidecar_for(port, json!({}));
    let raw = raw_exchange(sc.port(), "/public/stream", Duration::from_secs(10));
    assert!(
        !is_complete_200(&raw),
        "a cut stream was terminated as if complete: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(300)])
    );
}

#[test]
fn an_upstream_that_stalls_after_the_head_is_cut_within_the_request_timeout() {
    let (port, stop) = bad_upstream(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf");
        let _ = s.flush();
        thread::sleep(Duration::from_secs(8));
    });
    let sc = sidecar_for(port, json!({"upstream": {"request_timeout": "1s"}}));
    let t0 = Instant::now();
    let raw = raw_exchange(sc.port(), "/public/stall", Duration::from_secs(7));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the stalled response was held open for {:?}",
        t0.elapsed()
    );
    assert!(
        !is_complete_200(&raw),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // Stalling before the head is the 504 of tests/proxy.rs; here the head
    // was already sent, so the only honest signal left is the cut.
    stop.store(true, Ordering::Release);
}

#[test]
fn a_login_upstream_that_never_answers_is_504_and_creates_no_session() {
    let (port, stop) = bad_upstream(|_| thread::sleep(Duration::from_secs(4)));
    let sc = sidecar_for(port, json!({"upstream": {"request_timeout": "1s"}}));
    let r = sc.login_response("alice", "pw");
    assert_error(&r, 504, "upstream_timeout");
    assert_eq!(session_rows(&db_path(&sc)), 0, "a session without a login");
    stop.store(true, Ordering::Release);
}

// ---- SIGTERM ----------------------------------------------------------------

fn db_path(sc: &Sidecar) -> PathBuf {
    sc.dir().join("sessiongate.db")
}

/// A second process-level writer holding SQLite's write lock until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(path: &std::path::Path) -> WriteLock {
        let c = rusqlite::Connection::open(path).expect("open the database");
        c.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        c.execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");
        WriteLock(c)
    }

    fn release(self) {
        self.0.execute_batch("COMMIT").expect("release the lock");
    }
}

fn session_rows(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).expect("open the database");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .expect("count sessions")
}

#[test]
fn sigterm_lets_a_request_and_a_login_in_flight_finish_and_exits_within_the_grace() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({"server": {"shutdown_grace": "4s"}}));
    // Hold the write lock: the login's session write waits on it, so after
    // the upstream saw the login it is provably in flight inside sessiongate.
    let lock = WriteLock::take(&db_path(&sc));
    let port = sc.port();
    let slow = thread::spawn(move || Request::get("/public/slow?ms=1500").send(port));
    let login = thread::spawn(move || {
        Request::post("/v1/auth/login")
            .json(&json!({"username": "alice", "password": "pw"}))
            .send(port)
    });
    for path in ["/public/slow", "/login"] {
        assert!(
            up.wait_for(Duration::from_secs(5), |r| r.path == path)
                .is_some(),
            "{path} never reached the upstream"
        );
    }
    let signalled = Instant::now();
    sc.sigterm();
    // Release the lock only once the shutdown has begun.
    sc.wait_readyz(503, Duration::from_secs(2));
    lock.release();
    let r = slow.join().expect("slow thread");
    assert_eq!(r.status, 200, "the request was cut: {}", r.describe());
    let r = login.join().expect("login thread");
    assert_eq!(r.status, 200, "the login was cut: {}", r.describe());
    let tok = r.json();
    let code = sc.wait_exit(Duration::from_secs(4 + 2));
    assert_eq!(code, Some(Some(0)), "no clean exit\n{}", sc.logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    // The session was committed before exit: its refresh works after a restart.
    sc.restart();
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(r.status, 200, "session lost at shutdown: {}", r.describe());
}

// ---- SQLite -----------------------------------------------------------------

#[test]
fn a_database_locked_by_another_process_is_503_with_nothing_half_written() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let path = db_path(&sc);
    let before = session_rows(&path);
    let lock = WriteLock::take(&path);
    let r = sc.login_response("bob", "pw");
    assert_error(&r, 503, "store_unavailable");
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_error(&r, 503, "store_unavailable");
    // Proxied requests need no store: they keep working.
    let r = sc.get("/api/x", Some(&s(&tok, "access_token")));
    assert_eq!(r.status, 200, "{}", r.describe());
    lock.release();
    assert_eq!(session_rows(&path), before, "a session was half-created");
    // The refresh that failed did not use the token up.
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    sc.login("bob");
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes `files` read-only: `chattr +i` as root (root ignores file modes),
/// else chmod. `false` if that is not possible here.
fn set_read_only(files: &[PathBuf], on: bool) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if running_as_root() {
        let flag = if on { "+i" } else { "-i" };
        files.iter().all(|f| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(f)
                .status()
                .is_ok_and(|s| s.success())
        })
    } else {
        let mode = if on { 0o444 } else { 0o644 };
        files
            .iter()
            .all(|f| std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).is_ok())
    }
}

/// Files made read-only by [`set_read_only`], made writable again on drop
/// (a failed test must not leave `chattr +i` files that nothing can delete).
struct ReadOnly(Vec<PathBuf>);

impl ReadOnly {
    fn set(files: &[PathBuf]) -> Option<ReadOnly> {
        let guard = ReadOnly(files.to_vec());
        set_read_only(files, true).then_some(guard)
    }

    fn undo(mut self) -> bool {
        set_read_only(&std::mem::take(&mut self.0), false)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        set_read_only(&self.0, false);
    }
}

#[test]
fn a_read_only_database_is_503_and_no_answered_write_is_lost() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    let tok = sc.login("alice");
    let path = db_path(&sc);
    // Not `-shm`: SQLite maps it, and a write fault on a mapped page is a
    // SIGBUS (see SECURITY.md, known limits), not a store error.
    let wal = sc.dir().join("sessiongate.db-wal");
    let files: Vec<PathBuf> = [path.clone(), wal]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    let Some(read_only) = ReadOnly::set(&files) else {
        eprintln!("skipped: cannot make the database read-only here (no chattr?)");
        return;
    };
    let login = Request::post("/v1/auth/login")
        .json(&json!({"username": "bob", "password": "pw"}))
        .try_send(sc.port());
    let alive = sc.admin_get("/healthz");
    let refreshed = Request::post("/v1/auth/refresh")
        .json(&json!({"refresh_token": s(&tok, "refresh_token")}))
        .try_send(sc.port());
    assert!(read_only.undo(), "could not undo the read-only flag");
    let (Ok(login), Ok(refreshed)) = (login, refreshed) else {
        panic!(
            "no answer while the database was read-only (healthz {})\n{}",
            alive.status,
            sc.logs()
        );
    };
    // SECURITY.md: a read-only database and WAL give 503 and use nothing up.
    assert_error(&login, 503, "store_unavailable");
    assert_error(&refreshed, 503, "store_unavailable");
    sc.restart();
    let r = sc.refresh(&s(&tok, "refresh_token"));
    assert_eq!(
        r.status,
        200,
        "a failed refresh used the token up: {}",
        r.describe()
    );
    assert_eq!(session_rows(&path), 1, "the failed login left a session");
}

#[test]
fn a_deleted_database_is_503_not_a_success_that_is_lost() {
    let up = Upstream::start();
    let mut sc = Sidecar::start(&up, json!({}));
    sc.login("alice");
    let path = db_path(&sc);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let r = sc.login_response("bob", "pw");
    let ready = sc.admin_get("/readyz");
    if r.status == 200 {
        let tok = r.json();
        sc.restart();
        let again = sc.refresh(&s(&tok, "refresh_token"));
        panic!(
            "login answered 200 after the database was deleted (readyz {}); after a restart its refresh is {}",
            ready.status,
            again.status
        );
    }
    assert_error(&r, 503, "store_unavailable");
    assert_eq!(ready.status, 503, "{}", ready.describe());
}

// ---- slow clients -----------------------------------------------------------

#[test]
fn slowloris_clients_do_not_starve_other_clients() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({}));
    let port = sc.port();
    let stop = Arc::new(AtomicBool::new(false));
    let (started, dribbling) = std::sync::mpsc::channel();
    let mut dribblers = Vec::new();
    for i in 0..64 {
        let stop = stop.clone();
        let started = started.clone();
        dribblers.push(thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = write!(s, "GET /public/loris{i} HTTP/1.1\r\nHost: x\r\n");
            let _ = started.send(());
            while !stop.load(Ordering::Acquire) {
                if s.write_all(b"X-Slow: a\r\n").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    // Every dribbler is connected and has begun its head.
    for _ in 0..64 {
        dribbling
            .recv_timeout(Duration::from_secs(10))
            .expect("a slowloris client could not connect");
    }
    for _ in 0..20 {
        let t0 = Instant::now();
        let r = sc.send(Request::get("/public/ok"));
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "a normal request took {:?} beside slowloris clients",
            t0.elapsed()
        );
    }
    stop.store(true, Ordering::Release);
    for d in dribblers {
        let _ = d.join();
    }
    assert!(
        up.records()
            .iter()
            .all(|r| !r.path.starts_with("/public/loris")),
        "a half-sent head was forwarded"
    );
}

#[test]
fn a_client_that_stops_mid_head_is_disconnected_by_the_head_read_timeout() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"server": {"header_read_timeout": "1s"}}));
    for (port, what) in [(sc.port(), "client"), (sc.admin_port(), "admin")] {
        // Half a head, and a connection that sends nothing at all.
        for sent in [&b"GET /public/x HTTP/1.1\r\nHost: x\r\n"[..], b""] {
            let (_, took) = send_then_wait_for_close(port, sent);
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(5),
                "{what} listener, {} bytes sent: closed after {took:?}",
                sent.len()
            );
        }
    }
    assert!(up.records().is_empty(), "{:?}", up.records());
}

#[test]
fn an_auth_body_that_trickles_is_cut_at_the_head_read_timeout() {
    let up = Upstream::start();
    let sc = Sidecar::start(&up, json!({"server": {"header_read_timeout": "1s"}}));
    // Promises 100 bytes, sends 5, then nothing.
    let (buf, took) = send_then_wait_for_close(
        sc.port(),
        b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"ref",
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(took < Duration::from_secs(5), "held for {took:?}");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("bad_request"), "{text}");
}

/// Sends `bytes`, then reads until the server closes (at most 10 s): what
/// it answered, and how long the close took.
fn send_then_wait_for_close(port: u16, bytes: &[u8]) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(bytes).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (buf, t0.elapsed())
}
