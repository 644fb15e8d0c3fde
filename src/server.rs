//! The client listener: one worker thread per `server.threads`, each with its
//! own current-thread runtime, its own listening socket on the same port
//! (`SO_REUSEPORT`: the kernel spreads connections), its own upstream
//! connection pool and its own request counter. No lock and no connection on
//! the request path is shared between workers; what they share is read-only
//! configuration ([`Live`]), which a reload replaces whole (each request
//! takes the one current when it arrives, found by one atomic load), and,
//! written by every worker, the verified-token cache (moka) and the
//! revocation list's read locks (BENCHMARKS.md, session 8). The request
//! metrics are counted in cells of each worker's own, summed at a scrape
//! (`metrics/cells.rs`).
//!
//! A connection is TLS (`server.tls`) or plain; it speaks HTTP/2 when
//! `server.http2` is on and the client chose it (ALPN `h2`, or the h2c
//! prior-knowledge preface), HTTP/1.x otherwise. HTTP/1 upgrades
//! (WebSocket) are supported. The TLS handshake, the h2c preface and every
//! HTTP/1 request head must arrive within `server.header_read_timeout`, and
//! an HTTP/2 connection without a request for that long is closed ([`Idle`]).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::proxy::client::Peer;
use crate::proxy::forward::Forwarder;
use crate::proxy::gateway::Gateway;
use crate::proxy::upstream::Upstream;
use crate::shutdown::{InFlight, ShutdownWatch, WorkerCount};

/// What new connections and requests use. A reload (SPEC 1) replaces it
/// whole; requests already under way finish with the one they started with.
pub struct Live {
    pub gateway: Gateway,
    pub upstream: Arc<Upstream>,
    pub tls: Option<TlsAcceptor>,
    pub http2: bool,
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// The current [`Live`], and a count of replacements: a worker notices one
/// with a single atomic load of a line no request writes.
pub struct Current {
    live: ArcSwap<Live>,
    generation: AtomicU64,
}

impl Current {
    pub fn new(live: Live) -> Current {
        Current {
            live: ArcSwap::from_pointee(live),
            generation: AtomicU64::new(0),
        }
    }

    pub fn load(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// New requests use `live` from now on.
    pub fn replace(&self, live: Live) {
        self.live.store(Arc::new(live));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One listening socket per worker, all on `addr`'s port (the first one
/// picks it when `addr` says port 0).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        ensure_free(addr)?;
    }
    let mut listeners = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Fails with `AddrInUse` when something listens on `addr` already.
///
/// The workers' sockets share their port with `SO_REUSEPORT`, which would
/// just as well let them join the sockets of another process of the same
/// user listening there (a second sessiongate, with another config): the
/// kernel would split the clients between the two. A socket without
/// `SO_REUSEPORT` cannot bind while anyone listens on the port, so one is
/// bound and dropped first. (Two processes starting in the same instant
/// could both pass; this is a guard against a mistake, not a lock.)
fn ensure_free(addr: SocketAddr) -> std::io::Result<()> {
    let probe = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Connections of an earlier run in TIME_WAIT do not count as taken.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Starts one worker thread per listener. Each stops accepting when
/// `shutdown` says so, asks its connections to finish (HTTP/1: after the
/// request in progress; HTTP/2: GOAWAY), and keeps serving them until the
/// process exits.
pub fn start_workers(
    current: Arc<Current>,
    inflight: Arc<InFlight>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: ShutdownWatch,
) -> std::io::Result<()> {
    // Each runtime and its listener are made here, so that a failure is a
    // start-up error rather than a worker thread that ends the process.
    let mut ready = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = rt.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        ready.push((rt, listener));
    }
    for (i, (rt, listener)) in ready.into_iter().enumerate() {
        let current = current.clone();
        let count = inflight.worker();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name(format!("sg-worker-{i}"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, worker(current, count, listener, shutdown));
            })?;
    }
    Ok(())
}

/// A worker's own state, reached by its connections without atomics.
struct Worker {
    current: Arc<Current>,
    /// The [`Live`] this worker last saw, with its generation.
    view: RefCell<(u64, Rc<View>)>,
    count: Arc<WorkerCount>,
    /// This worker's copy of the shutdown signal: its connections wait on
    /// it, so no wait list is shared with other workers.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A [`Live`] and this worker's upstream connections for it.
struct View {
    live: Arc<Live>,
    forwarder: Forwarder,
}

impl Worker {
    /// The current [`View`]; rebuilt only after a reload, and then keeping
    /// the idle upstream connections when the upstream did not change.
    fn view(&self) -> Rc<View> {
        let generation = self.current.generation();
        let mut view = self.view.borrow_mut();
        if view.0 != generation {
            let live = self.current.load();
            let forwarder = if view.1.forwarder.serves(&live.upstream) {
                view.1.forwarder.clone()
            } else {
                Forwarder::new(live.upstream.clone())
            };
            *view = (generation, Rc::new(View { live, forwarder }));
        }
        view.1.clone()
    }
}

async fn worker(
    current: Arc<Current>,
    count: Arc<WorkerCount>,
    listener: tokio::net::TcpListener,
    mut global: ShutdownWatch,
) {
    let (local_tx, local_rx) = tokio::sync::watch::channel(false);
    let generation = current.generation();
    let live = current.load();
    let w = Rc::new(Worker {
        view: RefCell::new((
            generation,
            Rc::new(View {
                forwarder: Forwarder::new(live.upstream.clone()),
                live,
            }),
        )),
        current,
        count,
        shutdown: local_rx,
    });
    let sweeper = w.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            sweeper.view().forwarder.pool().sweep();
        }
    });
    loop {
        tokio::select! {
            // The shutdown first: when it and a queued connection are both
            // ready, an unbiased select would serve that connection during
            // the drain half the time.
            biased;
            changed = global.changed() => {
                if changed.is_err() || *global.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::task::spawn_local(serve(w.clone(), stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = local_tx.send(true);
    // Connections finish on this runtime; the drain exits the process.
    std::future::pending::<()>().await;
}

async fn serve(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    let _serving = w.count.enter();
    let _ = stream.set_nodelay(true);
    let view = w.view();
    let live = &view.live;
    let timeout = live.header_read_timeout;
    match &live.tls {
        Some(acceptor) => {
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_http(w.clone(), live, tls, peer, h2).await;
        }
        None => {
            let h2 = if live.http2 {
                match tokio::time::timeout(timeout, starts_with_h2_preface(&stream)).await {
                    Ok(Ok(h2)) => h2,
                    _ => return,
                }
            } else {
                false
            };
            serve_http(w.clone(), live, stream, peer, h2).await;
        }
    }
}

/// Serves one connection; `s` sets its limits, while each request uses the
/// [`Live`] current when it arrives.
async fn serve_http<I>(w: Rc<Worker>, s: &Live, io: I, peer: SocketAddr, h2: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = w.shutdown.clone();
    let handler = w.clone();
    let peer = Rc::new(Peer::new(peer.ip()));
    let handle = move |req| {
        let view = handler.view();
        let peer = peer.clone();
        async move {
            let live = &view.live;
            Ok::<_, Infallible>(live.gateway.handle(&view.forwarder, &peer, req).await)
        }
    };
    let io = TokioIo::new(io);
    if h2 {
        let idle = Rc::new(Idle::new());
        let requests = idle.clone();
        let service = service_fn(move |req| {
            let busy = requests.busy();
            let answer = handle(req);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(s.max_header_bytes * 2).unwrap_or(u32::MAX));
        let conn = builder.serve_connection(io, service);
        let idle_out = idle.expired(s.header_read_timeout);
        until_stop(conn, &mut shutdown, idle_out, |c| c.graceful_shutdown()).await;
    } else {
        let service = service_fn(handle);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .preserve_header_case(true)
            .max_header_size((s.max_header_bytes * 2).max(64 * 1024));
        // Twice the configured limit: a request over the limit but under
        // this gets SPEC 4's JSON 431 from sessiongate; hyper answers the
        // rest with its plain 431.
        builder.max_headers(s.max_headers * 2);
        let conn = builder.serve_connection(io, service).with_upgrades();
        // hyper's header_read_timeout closes an idle keep-alive connection.
        let never = std::future::pending::<Duration>();
        until_stop(conn, &mut shutdown, never, |c| c.graceful_shutdown()).await;
    }
}

/// When an HTTP/2 connection last had no request in progress, and how many
/// it has. hyper times no HTTP/2 request head, nor an idle connection: a
/// client could hold one open for ever with a bare preface, PINGs, or a
/// header block it never ends (CONTINUATION frames). So a connection with
/// no request in progress and none started for `server.header_read_timeout`
/// is asked to close (GOAWAY), as an idle HTTP/1 keep-alive connection is.
/// A request counts from its complete head to its answer's head; a body
/// still streaming after that finishes under the GOAWAY.
struct Idle {
    in_progress: std::cell::Cell<usize>,
    since: std::cell::Cell<tokio::time::Instant>,
}

/// A request in progress on an HTTP/2 connection, until dropped.
struct Busy(Rc<Idle>);

impl Idle {
    fn new() -> Idle {
        Idle {
            in_progress: std::cell::Cell::new(0),
            since: std::cell::Cell::new(tokio::time::Instant::now()),
        }
    }

    fn busy(self: &Rc<Self>) -> Busy {
        self.in_progress.set(self.in_progress.get() + 1);
        Busy(self.clone())
    }

    /// Resolves, with `limit`, once the connection has been idle for `limit`.
    async fn expired(self: Rc<Self>, limit: Duration) -> Duration {
        loop {
            let until = self.since.get() + limit;
            if self.in_progress.get() == 0 && until <= tokio::time::Instant::now() {
                return limit;
            }
            if self.in_progress.get() == 0 {
                tokio::time::sleep_until(until).await;
            } else {
                tokio::time::sleep(limit).await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let idle = &self.0;
        idle.in_progress.set(idle.in_progress.get() - 1);
        idle.since.set(tokio::time::Instant::now());
    }
}

/// Drives a connection; at shutdown, or when `idle_out` resolves, asks it
/// to finish gracefully and keeps driving it until it has. After `idle_out`
/// (which says how long it waited) it gets that long again, then is
/// dropped: an idle HTTP/2 client may never answer the PING of hyper's
/// graceful GOAWAY, and has no request in progress to lose.
async fn until_stop<C, E>(
    conn: C,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    idle_out: impl Future<Output = Duration>,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let stopping = async {
        tokio::select! {
            idle = idle_out => Some(idle),
            () = async {
                while !*shutdown.borrow_and_update() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            } => None,
        }
    };
    // Biased: the connection first, and no random draw per wake.
    let ended = tokio::select! {
        biased;
        r = conn.as_mut() => Ok(r),
        stop = stopping => Err(stop),
    };
    let result = match ended {
        Ok(r) => r,
        Err(None) => {
            graceful(conn.as_mut());
            conn.await
        }
        Err(Some(idle)) => {
            graceful(conn.as_mut());
            match tokio::time::timeout(idle, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return, // dropped: the socket closes
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Whether a plain connection opens with the HTTP/2 preface (h2c with
/// prior knowledge). Looks without consuming.
async fn starts_with_h2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // Part of a preface so far: wait for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs HTTP/2 streams on the worker's own thread.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
