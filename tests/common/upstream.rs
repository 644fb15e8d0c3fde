//! The "legacy API" behind the sidecar: a real HTTP/1.1 server on
//! 127.0.0.1:0 (std sockets, a thread per connection, keep-alive) that
//! records every request exactly as received and answers with a JSON echo.
//!
//! - `POST /login` with `{"username","password"}`: alice/pw, bob/pw and
//!   {carol}/pw get 200 with `X-Session-Subject: user-<name>` and
//!   `X-Session-Claims`; anything else gets 401 `{"error":"bad_credentials"}`.
//! - a path ending in `/slow` with `?ms=N` sleeps N ms, then echoes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// In the order and spelling received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    /// Values of every header named `name`, case-insensitively and with `_` equal to `-`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }
}

/// Header names compared as SPEC 6 does: case-insensitive, `_` == `-`.
pub fn same_header(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    norm(a) == norm(b)
}

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    stop: AtomicBool,
}

pub struct Upstream {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared::default());
        let acceptor = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if acceptor.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(conn) = conn {
                    let shared = acceptor.clone();
                    thread::spawn(move || serve_connection(conn, &shared));
                }
            }
        });
        Upstream { port, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.shared.records.lock().expect("records lock").clone()
    }

    /// Requests whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.records()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits up to `timeout` for a request matching `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Option<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.records.lock().expect("records lock");
        loop {
            if let Some(r) = guard.iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self
                .shared
                .arrived
                .wait_timeout(guard, left)
                .expect("records lock")
                .0;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_connection(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    while let Some((record, keep_alive)) = read_request(&mut reader) {
        shared
            .records
            .lock()
            .expect("records lock")
            .push(record.clone());
        shared.arrived.notify_all();
        let (status, extra, body) = answer(&record);
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in extra {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if record.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if writer.write_all(&out).is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request; `None` at end of stream or on garbage.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(Recorded, bool)> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (method, target, version) = (
        parts.next()?.to_owned(),
        parts.next()?.to_owned(),
        parts.next()?.to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    };
    let body = if get("transfer-encoding").contains("chunked") {
        read_chunked(r)?
    } else {
        let len: usize = get("content-length")
            .split(',')
            .next()?
            .trim()
            .parse()
            .unwrap_or(0);
        let mut b = vec![0; len];
        r.read_exact(&mut b).ok()?;
        b
    };
    let keep_alive = version == "HTTP/1.1" && !get("connection").contains("close");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let record = Recorded {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    Some((record, keep_alive))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            loop {
                let mut t = String::new();
                r.read_line(&mut t).ok()?;
                if t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..n]);
    }
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn answer(rec: &Recorded) -> Answer {
    if rec.method == "POST" && rec.path == "/login" {
        return login(rec);
    }
    if rec.path.ends_with("/slow") {
        let ms = rec
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        thread::sleep(Duration::from_millis(ms));
    }
    (200, vec![], echo(rec))
}

fn echo(rec: &Recorded) -> Vec<u8> {
    let headers: Vec<Value> = rec.headers.iter().map(|(n, v)| json!([n, v])).collect();
    serde_json::to_vec(&json!({
        "method": rec.method,
        "path": rec.path,
        "query": rec.query,
        "headers": headers,
        "body": rec.body,
    }))
    .expect("echo serializes")
}

fn login(rec: &Recorded) -> Answer {
    let creds: Value = serde_json::from_str(&rec.body).unwrap_or(Value::Null);
    let user = creds["username"].as_str().unwrap_or_default();
    let password = creds["password"].as_str().unwrap_or_default();
    let role = match (user, password) {
        ("alice", "pw") => Some("admin"),
        ("bob", "pw") => Some("user"),
        // Braces: a Redis hash tag in the subject must not break the key layout.
        ("{carol}", "pw") => Some("user"),
        _ => None,
    };
    // A `claims` object in the credentials is answered as the claims verbatim.
    let claims = match &creds["claims"] {
        Value::Null => None,
        c => Some(c.to_string()),
    };
    match role {
        Some(role) => (
            200,
            vec![
                ("X-Session-Subject", format!("user-{user}")),
                (
                    "X-Session-Claims",
                    claims.unwrap_or_else(|| format!(r#"{{"role":"{role}"}}"#)),
                ),
            ],
            serde_json::to_vec(&json!({"ok": true, "user": user})).expect("serializes"),
        ),
        None => (401, vec![], br#"{"error":"bad_credentials"}"#.to_vec()),
    }
}
