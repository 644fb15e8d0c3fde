//! Kept-alive upstream connections, one pool per worker.
//!
//! Each worker runs on its own current-thread runtime, so its pool is plain
//! `Rc<RefCell<..>>`: no lock, no atomic, nothing shared with other workers.
//! A connection goes back to the pool when the response body it carried has
//! been read to its end; idle connections are dropped after `IDLE_TIMEOUT`,
//! beyond `MAX_IDLE`, when the upstream closes them, or when the upstream's
//! address changes (DNS re-resolution).

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::body::Outgoing;
use super::upstream::{ConnectError, Upstream};

/// An idle connection is closed after this long unused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many idle connections per worker; more are closed.
pub const MAX_IDLE: usize = 256;

pub struct Pool {
    upstream: Arc<Upstream>,
    idle: RefCell<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<Outgoing>,
    addr: SocketAddr,
    since: Instant,
}

/// A connection checked out for one request.
pub struct Conn {
    pub sender: SendRequest<Outgoing>,
    pub addr: SocketAddr,
    /// It carried a request before: a failure to send on it may be the
    /// upstream having closed it meanwhile, worth one retry on a new one.
    pub reused: bool,
}

impl Pool {
    pub fn new(upstream: Arc<Upstream>) -> Rc<Pool> {
        Rc::new(Pool {
            upstream,
            idle: RefCell::new(Vec::new()),
        })
    }

    /// The most recently used idle connection that is still good, else a new one.
    pub async fn checkout(&self) -> Result<Conn, ConnectError> {
        let current = self.upstream.addr();
        let now = Instant::now();
        loop {
            let Some(idle) = self.idle.borrow_mut().pop() else {
                break;
            };
            if Some(idle.addr) != current
                || idle.sender.is_closed()
                || now.duration_since(idle.since) >= IDLE_TIMEOUT
            {
                continue;
            }
            if !idle.sender.is_ready() {
                // Its connection task may not have run since the body ended:
                // give it one turn.
                tokio::task::yield_now().await;
            }
            if idle.sender.is_ready() {
                return Ok(Conn {
                    sender: idle.sender,
                    addr: idle.addr,
                    reused: true,
                });
            }
        }
        // Boxed: dialing (DNS, TCP, TLS, handshake) is a large state machine
        // that reuse rarely needs; inline, every request's future would carry
        // it and be moved with it.
        Box::pin(self.connect()).await
    }

    async fn connect(&self) -> Result<Conn, ConnectError> {
        let (stream, addr) = self.upstream.connect().await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Failed(std::io::Error::other(e)))?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Conn {
            sender,
            addr,
            reused: false,
        })
    }

    /// Keeps a connection whose exchange is over for the next request.
    fn checkin(&self, sender: SendRequest<Outgoing>, addr: SocketAddr) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= MAX_IDLE {
            // The oldest goes: it is the likeliest to have been closed.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            addr,
            since: Instant::now(),
        });
    }

    /// Closes connections idle for longer than `IDLE_TIMEOUT` or closed by
    /// the upstream. Run now and then by the worker.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.idle
            .borrow_mut()
            .retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
    }

    /// The upstream's response body; its connection returns to `pool` when
    /// the body has been read to its end (dropped early, the connection closes).
    pub fn body(self: &Rc<Self>, inner: Incoming, conn: Conn) -> PooledBody {
        let mut body = PooledBody {
            inner,
            back: Some((self.clone(), conn.sender, conn.addr)),
            stall: None,
            waiting: false,
            timeout: self.upstream.timeout(),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }
}

pub struct PooledBody {
    inner: Incoming,
    back: Option<(Rc<Pool>, SendRequest<Outgoing>, SocketAddr)>,
    /// Armed while the upstream has sent nothing new (boxed only then: a
    /// body that arrives with its head never needs it).
    stall: Option<Pin<Box<Sleep>>>,
    /// `stall` is armed for the current wait.
    waiting: bool,
    /// `upstream.request_timeout`: the longest the upstream may go silent.
    timeout: Duration,
}

/// The upstream went silent in the middle of a body.
#[derive(Debug)]
pub struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream stopped sending its response body")
    }
}

impl std::error::Error for Stalled {}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, sender, addr)) = self.back.take() {
            pool.checkin(sender, addr);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                // The clock runs from when this wait began: time the client
                // took to ask for more is not the upstream's.
                let deadline = tokio::time::Instant::now() + this.timeout;
                let stall = match &mut this.stall {
                    Some(stall) => {
                        if !this.waiting {
                            stall.as_mut().reset(deadline);
                        }
                        stall
                    }
                    None => this
                        .stall
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.waiting = true;
                if stall.as_mut().poll(cx).is_ready() {
                    // The connection is dropped with the body: never reused.
                    this.back = None;
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
                Poll::Pending
            }
            Poll::Ready(polled) => {
                this.waiting = false;
                match &polled {
                    None => this.release(),
                    Some(Ok(_)) if this.inner.is_end_stream() => this.release(),
                    Some(Err(_)) => this.back = None,
                    _ => {}
                }
                Poll::Ready(polled.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
