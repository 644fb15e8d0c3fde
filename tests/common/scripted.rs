//! An upstream a test scripts: a real HTTP/1.1 server on 127.0.0.1:0 (std
//! sockets, a thread per connection, keep-alive) that records each request
//! exactly as it arrived and answers with whatever [`Reply`] the test's
//! script returns for it — interim 1xx heads, a 101 tunnel that echoes bytes,
//! a slow head, a body streamed in timed chunks, or raw (malformed) bytes.
//!
//! ```ignore
//! let up = Scripted::start(|req: &SeenRequest| Reply::status(401).header("X-A", "b").body("no"));
//! // ... send through the sidecar ...
//! let seen = up.wait_seen(1, Duration::from_secs(5));
//! assert_eq!(seen[0].target, "/login");
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How many bytes of a request body are kept in [`SeenRequest::body`].
pub const BODY_KEPT: usize = 1 << 20;
const MAX_HEAD: usize = 1 << 20;

/// One request as the upstream received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method as on the wire; `"<unparsable>"` if the head was not HTTP.
    pub method: String,
    /// The request-target exactly as on the wire (path and query, raw);
    /// for an unparsable head, the bytes received (lossy UTF-8).
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`, as sent.
    pub version: String,
    /// In the order and spelling received (value trimmed of outer whitespace).
    pub headers: Vec<(String, String)>,
    /// The de-framed body (chunked decoded), at most [`BODY_KEPT`] bytes of it.
    pub body: Vec<u8>,
    /// The full de-framed body length.
    pub body_len: u64,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// How a [`Reply::stream`]ed body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one HTTP chunk per piece.
    Chunked,
    /// `Content-Length` of the whole body, written piece by piece.
    Length,
    /// No length: the body ends when the connection closes.
    Close,
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// `count` pieces of `size` bytes of [`pattern`], `every` apart.
    Stream {
        size: usize,
        count: usize,
        every: Duration,
        framing: Framing,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    Normal {
        status: u16,
        body: Body,
    },
    /// A 101 head (with the given headers), then echo every byte back.
    Tunnel,
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
}

/// What the upstream answers to one request. Build with [`Reply::status`],
/// [`Reply::switching`] or [`Reply::raw`], then add to it.
#[derive(Clone, Debug)]
pub struct Reply {
    kind: Kind,
    headers: Vec<(String, String)>,
    interim: Vec<(u16, Vec<(String, String)>)>,
    delay: Duration,
    close: bool,
}

impl Reply {
    /// A final response with `status`, no headers yet and an empty body.
    /// `Content-Length` is added unless set or implied (1xx, 204, 304, stream).
    pub fn status(status: u16) -> Reply {
        Reply::of(Kind::Normal {
            status,
            body: Body::Bytes(Vec::new()),
        })
    }

    /// `101 Switching Protocols` with only the headers the test adds (add
    /// `Upgrade`/`Connection` or leave them out); afterwards every byte
    /// received on the connection is echoed back until it closes.
    pub fn switching() -> Reply {
        Reply::of(Kind::Tunnel)
    }

    /// `bytes` written verbatim as the whole answer, then the connection closes.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::of(Kind::Raw(bytes.into()))
    }

    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            headers: Vec::new(),
            interim: Vec::new(),
            delay: Duration::ZERO,
            close: false,
        }
    }

    /// Adds a header to the final head (order and spelling kept; repeat for duplicates).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body, sent at once.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Reply {
        if let Kind::Normal { body, .. } = &mut self.kind {
            *body = Body::Bytes(bytes.into());
        }
        self
    }

    /// A body of `count` pieces of `size` bytes of [`pattern`], one every
    /// `every` (the first at once), framed as `framing`.
    pub fn stream(mut self, size: usize, count: usize, every: Duration, framing: Framing) -> Reply {
        if let Kind::Normal { body, .. } = &mut self.kind {
            *body = Body::Stream {
                size,
                count,
                every,
                framing,
            };
        }
        self
    }

    /// An interim head (`100`, `103`, ...) sent before the final one, in call order.
    pub fn interim(mut self, status: u16, headers: &[(&str, &str)]) -> Reply {
        let hs = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.interim.push((status, hs));
        self
    }

    /// A slow head: wait `d` after the request arrived before writing anything.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Adds `Connection: close` and closes after this answer.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// `len` bytes of the test pattern starting at absolute `offset`: byte `i`
/// is `i % 251`, so a dropped, repeated or reordered piece shows.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let cycle: Vec<u8> = (0..=250u8).collect();
    let start = (offset % 251) as usize;
    let mut out = Vec::with_capacity(len + 251);
    out.extend_from_slice(&cycle[start..]);
    while out.len() < len {
        out.extend_from_slice(&cycle);
    }
    out.truncate(len);
    out
}

type Script = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

struct Shared {
    seen: Mutex<Vec<SeenRequest>>,
    arrived: Condvar,
    stop: AtomicBool,
    script: Box<Script>,
    /// TCP connections accepted so far.
    accepted: AtomicUsize,
    /// Request body bytes (de-framed) read so far, over every request,
    /// counted as they arrive rather than once a request is complete.
    body_bytes: AtomicU64,
}

/// The running upstream; stops accepting on drop.
pub struct Scripted {
    /// The port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Scripted {
    /// Starts on a free port; `script` chooses the answer to each request.
    pub fn start(script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted upstream");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            script: Box::new(script),
            accepted: AtomicUsize::new(0),
            body_bytes: AtomicU64::new(0),
        });
        let acceptor = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if acceptor.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(conn) = conn {
                    acceptor.accepted.fetch_add(1, Ordering::SeqCst);
                    let shared = acceptor.clone();
                    thread::spawn(move || serve(conn, &shared));
                }
            }
        });
        Scripted { port, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().expect("seen lock").clone()
    }

    /// How many TCP connections were accepted so far (a reused upstream
    /// connection counts once).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Request body bytes read so far over every request, updated as each
    /// piece arrives: shows a body arriving while its sender still sends.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// Waits (polling) until [`Self::body_bytes`] reaches `n`; whether it did
    /// within `timeout`.
    pub fn wait_body_bytes(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.body_bytes() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits (on a condvar) until at least `n` requests were received and
    /// returns them all; panics with what was seen after `timeout`.
    pub fn wait_seen(&self, n: usize, timeout: Duration) -> Vec<SeenRequest> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.seen.lock().expect("seen lock");
        while guard.len() < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!(
                    "upstream saw {} of {n} requests in {timeout:?}: {guard:#?}",
                    guard.len()
                );
            };
            guard = self
                .shared
                .arrived
                .wait_timeout(guard, left)
                .expect("seen lock")
                .0;
        }
        guard.clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let seen = match read_request(&mut reader, &shared.body_bytes) {
            Incoming::Request(seen) => seen,
            Incoming::End => return,
            Incoming::Garbage(garbage) => {
                record(shared, garbage);
                return;
            }
        };
        record(shared, seen.clone());
        let reply = (shared.script)(&seen);
        let keep = !reply.close
            && seen.version == "HTTP/1.1"
            && !seen
                .header_values("connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("close"));
        match answer(&mut writer, &seen, reply, keep) {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Tunnel) => return tunnel(reader, writer),
            Ok(Next::Close) | Err(_) => return,
        }
    }
}

fn record(shared: &Shared, seen: SeenRequest) {
    shared.seen.lock().expect("seen lock").push(seen);
    shared.arrived.notify_all();
}

enum Next {
    KeepAlive,
    Tunnel,
    Close,
}

fn answer(w: &mut TcpStream, req: &SeenRequest, reply: Reply, keep: bool) -> std::io::Result<Next> {
    thread::sleep(reply.delay);
    for (status, headers) in &reply.interim {
        w.write_all(&head(*status, headers))?;
    }
    let (status, body) = match reply.kind {
        Kind::Raw(bytes) => {
            w.write_all(&bytes)?;
            return Ok(Next::Close);
        }
        Kind::Tunnel => {
            w.write_all(&head(101, &reply.headers))?;
            return Ok(Next::Tunnel);
        }
        Kind::Normal { status, body } => (status, body),
    };
    let mut headers = reply.headers;
    let set = |hs: &[(String, String)], n: &str| hs.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    let bodiless_status = status < 200 || status == 204 || status == 304;
    let no_body = req.method == "HEAD" || bodiless_status;
    let framed = set(&headers, "content-length") || set(&headers, "transfer-encoding");
    let keep = match &body {
        Body::Bytes(b) => {
            if !(framed || bodiless_status) {
                headers.push(("Content-Length".into(), b.len().to_string()));
            }
            keep
        }
        Body::Stream {
            size,
            count,
            framing,
            ..
        } => match framing {
            Framing::Chunked => {
                headers.push(("Transfer-Encoding".into(), "chunked".into()));
                keep
            }
            Framing::Length => {
                headers.push(("Content-Length".into(), (size * count).to_string()));
                keep
            }
            Framing::Close => false,
        },
    };
    if !keep {
        headers.push(("Connection".into(), "close".into()));
    }
    w.write_all(&head(status, &headers))?;
    if !no_body {
        write_body(w, body)?;
    }
    w.flush()?;
    Ok(if keep { Next::KeepAlive } else { Next::Close })
}

fn write_body(w: &mut TcpStream, body: Body) -> std::io::Result<()> {
    let (size, count, every, framing) = match body {
        Body::Bytes(b) => return w.write_all(&b),
        Body::Stream {
            size,
            count,
            every,
            framing,
        } => (size, count, every, framing),
    };
    for i in 0..count {
        if i > 0 {
            thread::sleep(every);
        }
        let piece = pattern((i * size) as u64, size);
        if framing == Framing::Chunked {
            w.write_all(format!("{size:x}\r\n").as_bytes())?;
            w.write_all(&piece)?;
            w.write_all(b"\r\n")?;
        } else {
            w.write_all(&piece)?;
        }
    }
    if framing == Framing::Chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

fn head(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let reason = match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Echoes every byte back until either side closes.
fn tunnel(mut reader: BufReader<TcpStream>, mut writer: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if writer.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

enum Incoming {
    Request(SeenRequest),
    /// A clean end of stream between requests.
    End,
    /// Not an HTTP/1 request: what arrived, recorded as `<unparsable>`.
    Garbage(SeenRequest),
}

fn read_request(r: &mut BufReader<TcpStream>, progress: &AtomicU64) -> Incoming {
    let mut raw = Vec::new();
    let garbage = |raw: &[u8]| SeenRequest {
        method: "<unparsable>".into(),
        target: String::from_utf8_lossy(raw).into_owned(),
        version: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        body_len: 0,
    };
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).unwrap_or(0);
        raw.extend_from_slice(&line);
        if n == 0 {
            return if raw.iter().all(u8::is_ascii_whitespace) {
                Incoming::End
            } else {
                Incoming::Garbage(garbage(&raw))
            };
        }
        if raw.len() > MAX_HEAD {
            return Incoming::Garbage(garbage(&raw));
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // blank lines before a request are allowed
            }
            break;
        }
        lines.push(text);
    }
    let mut start = lines[0].splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (start.next(), start.next(), start.next())
    else {
        return Incoming::Garbage(garbage(&raw));
    };
    let mut headers = Vec::new();
    for l in &lines[1..] {
        let Some((n, v)) = l.split_once(':') else {
            return Incoming::Garbage(garbage(&raw));
        };
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    let mut seen = SeenRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body: Vec::new(),
        body_len: 0,
    };
    let chunked = seen
        .header_values("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let ok = if chunked {
        read_chunked(r, &mut seen, progress)
    } else {
        let len = seen.header("content-length").map(|v| v.parse::<u64>());
        match len {
            None => Some(()),
            Some(Ok(len)) => read_body(r, len, &mut seen, progress),
            Some(Err(_)) => None,
        }
    };
    match ok {
        Some(()) => Incoming::Request(seen),
        None => Incoming::Garbage(garbage(&raw)),
    }
}

fn read_body(
    r: &mut BufReader<TcpStream>,
    mut len: u64,
    seen: &mut SeenRequest,
    progress: &AtomicU64,
) -> Option<()> {
    let mut buf = vec![0u8; 65536];
    while len > 0 {
        let want = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let n = r.read(&mut buf[..want]).ok()?;
        if n == 0 {
            return None;
        }
        let keep = BODY_KEPT.saturating_sub(seen.body.len()).min(n);
        seen.body.extend_from_slice(&buf[..keep]);
        seen.body_len += n as u64;
        progress.fetch_add(n as u64, Ordering::SeqCst);
        len -= n as u64;
    }
    Some(())
}

fn read_chunked(
    r: &mut BufReader<TcpStream>,
    seen: &mut SeenRequest,
    progress: &AtomicU64,
) -> Option<()> {
    loop {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = u64::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return Some(());
                }
            }
        }
        read_body(r, n, seen, progress)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).ok()?;
    }
}
