//! The floor of `bench/compare.py`: the smallest honest hyper 1.x HTTP/1.1
//! reverse proxy. It only forwards: no auth, no rewrite beyond the hop-by-hop
//! headers HTTP requires a proxy to drop, no log. What sessiongate costs above
//! it is our own work; what it costs above nginx is the framework's.
//!
//! Built like sessiongate's data plane: one current-thread runtime (one
//! worker), one hyper HTTP/1 server connection per client, upstream
//! connections kept alive in a pool of this worker (no lock) and reused once
//! the previous response body has ended.
//!
//! `cargo run --release --example forward_only -- 127.0.0.1:18080 127.0.0.1:18081`
//!
//! With a third argument `--preserve-case`, header names keep the sender's
//! spelling both ways (hyper's case map, as sessiongate does): the floor of
//! a proxy that keeps that promise.

use std::cell::RefCell;
use std::convert::Infallible;
use std::error::Error;
use std::rc::Rc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, CONNECTION, TE, TRAILER, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{spawn_local, LocalSet};

/// Idle upstream connections beyond this many are closed.
const MAX_IDLE: usize = 64;

/// The upstream's body, or nothing (our own 502).
type Body = Either<Incoming, Empty<Bytes>>;

/// The upstream address and this worker's idle connections to it.
#[derive(Clone)]
struct Upstream {
    addr: Rc<str>,
    /// Keep header names as they were spelled (`--preserve-case`).
    preserve_case: bool,
    idle: Rc<RefCell<Vec<SendRequest<Incoming>>>>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, preserve_case) = match args.as_slice() {
        [listen, upstream] => (listen, upstream, false),
        [listen, upstream, flag] if flag == "--preserve-case" => (listen, upstream, true),
        _ => {
            return Err(
                "usage: forward_only <listen addr> <upstream addr> [--preserve-case]".into(),
            )
        }
    };
    let upstream = Upstream {
        addr: upstream.as_str().into(),
        preserve_case,
        idle: Rc::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    LocalSet::new().block_on(&runtime, accept_loop(listen, upstream))
}

async fn accept_loop(listen: &str, upstream: Upstream) -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let upstream = upstream.clone();
        let preserve_case = upstream.preserve_case;
        spawn_local(async move {
            let service = service_fn(move |req| upstream.clone().forward(req));
            // Whether the client closed cleanly or went away mid-request, there is nothing left to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(preserve_case)
                .serve_connection(TokioIo::new(client), service)
                .await;
        });
    }
}

impl Upstream {
    async fn forward(self, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        strip_hop_by_hop(req.headers_mut());
        loop {
            let Ok((mut sender, reused)) = self.checkout().await else {
                return Ok(bad_gateway());
            };
            match sender.try_send_request(req).await {
                Ok(mut response) => {
                    self.checkin(sender);
                    strip_hop_by_hop(response.headers_mut());
                    return Ok(response.map(Either::Left));
                }
                // An idle connection closed before the request went out: send it on a fresh one.
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Ok(bad_gateway()),
                },
            }
        }
    }

    /// An idle connection that is still open (`true`), or a new one.
    async fn checkout(&self) -> Result<(SendRequest<Incoming>, bool), Box<dyn Error>> {
        while let Some(sender) = self.idle.borrow_mut().pop() {
            if sender.is_ready() {
                return Ok((sender, true));
            }
        }
        let stream = TcpStream::connect(&*self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(self.preserve_case)
            .handshake(TokioIo::new(stream))
            .await?;
        spawn_local(async move {
            let _ = connection.await;
        });
        Ok((sender, false))
    }

    /// Back to the pool once the response body has ended: an HTTP/1.1
    /// connection carries one exchange at a time (hyper-util's pool does the same).
    fn checkin(&self, mut sender: SendRequest<Incoming>) {
        let idle = self.idle.clone();
        spawn_local(async move {
            if sender.ready().await.is_ok() && idle.borrow().len() < MAX_IDLE {
                idle.borrow_mut().push(sender);
            }
        });
    }
}

/// RFC 9110 7.6.1: `Connection` and the headers it names belong to one hop.
/// hyper sets the framing headers (`Transfer-Encoding`, `Content-Length`) itself.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TE, TRAILER, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
