//! The admin listener (SPEC 7): `/healthz`, `/readyz`, `/metrics`, and the
//! operator API (SPEC 9, [`operator`]). Nothing of it is served on the client
//! listener.
//!
//! It runs on the background runtime, apart from the workers, and keeps
//! answering while requests drain (`/healthz` 200, `/readyz` 503 "shutting
//! down") until the process exits.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

pub mod operator;

use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::proxy::headers::{acceptable_request_id, new_request_id};
use crate::proxy::respond::X_REQUEST_ID;
use crate::revocation::RevocationList;
use crate::shutdown::InFlight;
use crate::store::SessionStore;

const READY_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Admin {
    metrics: Arc<Metrics>,
    store: Arc<dyn SessionStore>,
    revocations: Arc<RevocationList>,
    inflight: Arc<InFlight>,
    /// The client listener (`server.listen`): not ready until it accepts.
    listen: std::net::SocketAddr,
    listening: std::sync::atomic::AtomicBool,
    /// What a reload may change (SPEC 1).
    settings: ArcSwap<AdminSettings>,
}

impl Admin {
    /// What the admin listener reports on: the store and revocation list
    /// for `/readyz` and `/metrics`, the requests in flight, and the client
    /// listener at `listen`.
    pub fn new(
        metrics: Arc<Metrics>,
        store: Arc<dyn SessionStore>,
        revocations: Arc<RevocationList>,
        inflight: Arc<InFlight>,
        listen: std::net::SocketAddr,
        settings: AdminSettings,
    ) -> Admin {
        Admin {
            metrics,
            store,
            revocations,
            inflight,
            listen,
            listening: Default::default(),
            settings: ArcSwap::from_pointee(settings),
        }
    }

    /// Puts a reloaded config's settings in use for the next request.
    pub fn reconfigure(&self, settings: AdminSettings) {
        self.settings.store(Arc::new(settings));
    }
}

/// The admin listener's reloadable settings.
pub struct AdminSettings {
    /// The operator API; `None` when no admin token is configured.
    pub operator: Option<operator::Operator>,
    /// `server.header_read_timeout`: a slower request head is dropped.
    pub head_timeout: Duration,
}

/// The admin server: the listener is bound at start-up (so a taken port is
/// a start-up error) and served from the background runtime.
pub struct AdminService {
    admin: Arc<Admin>,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl AdminService {
    pub fn bind(admin: Admin, addr: std::net::SocketAddr) -> std::io::Result<AdminService> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            admin: Arc::new(admin),
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The state it serves, for a reload to reconfigure.
    pub fn admin(&self) -> Arc<Admin> {
        self.admin.clone()
    }
}

impl Admin {
    /// Until a connection to the client listener succeeds once, the process
    /// is not ready.
    async fn client_listener_up(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.listening.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        match tokio::time::timeout(READY_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                self.listening.store(true, Ordering::Release);
                Ok(())
            }
            _ => Err("the client listener is not accepting connections yet".into()),
        }
    }
}

impl AdminService {
    /// Serves until the process exits (the drain ends it), not at SIGTERM.
    pub async fn run(&self) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener unusable");
                return;
            }
        };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admin = self.admin.clone();
            let head_timeout = admin.settings.load().head_timeout;
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let admin = admin.clone();
                    async move {
                        let settings = admin.settings.load_full();
                        // SPEC 6: every response carries a request id, the
                        // client's when acceptable.
                        let request_id = req
                            .headers()
                            .get(&X_REQUEST_ID)
                            .filter(|v| acceptable_request_id(v))
                            .cloned()
                            .unwrap_or_else(new_request_id);
                        let mut resp = match &settings.operator {
                            Some(op) if req.uri().path().starts_with(operator::PREFIX) => {
                                let started = std::time::Instant::now();
                                let resp = op.handle(req, peer.ip()).await;
                                admin.metrics.observe_request(
                                    crate::metrics::Route::Admin,
                                    resp.status().as_u16(),
                                    started.elapsed().as_secs_f64(),
                                );
                                resp
                            }
                            None if req.uri().path().starts_with(operator::PREFIX) => {
                                operator::error(&ApiError::NotFound)
                            }
                            _ => admin.respond(req.uri().path()).await,
                        };
                        resp.headers_mut().insert(X_REQUEST_ID, request_id);
                        Ok::<_, Infallible>(resp.map(|body| Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

impl Admin {
    async fn ready(&self) -> Result<(), String> {
        if self.inflight.draining() {
            return Err("shutting down".into());
        }
        self.revocations
            .check_fresh(crate::time::unix_now_ms())
            .map_err(|stale| stale.to_string())?;
        let ping = match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the session store did not answer within 1s".to_owned()),
        };
        // SPEC 7: with a shared store, one failover must not take every
        // replica out of its Service at once. While the revocation list is
        // fresh enough to enforce (checked above), the replica keeps serving
        // the routes that need no store round trip.
        if let Err(why) = ping {
            if !self.revocations.tracks_freshness() {
                return Err(why);
            }
        }
        self.client_listener_up().await
    }
}

impl Admin {
    async fn respond(&self, path: &str) -> Response<Vec<u8>> {
        match path {
            "/healthz" => text(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => match self.ready().await {
                Ok(()) => text(200, "application/json", br#"{"status":"ready"}"#.to_vec()),
                Err(why) => {
                    let body = serde_json::to_vec(
                        &serde_json::json!({"status": "not ready", "reason": why}),
                    )
                    .unwrap_or_default();
                    text(503, "application/json", body)
                }
            },
            "/metrics" => {
                // A scrape is a good moment to drop harmless entries: it
                // keeps the gauge honest and runs off the request path.
                self.metrics
                    .revocation_entries
                    .set(self.revocations.sweep() as i64);
                self.metrics
                    .revocation_staleness
                    .set(self.revocations.staleness_seconds());
                self.metrics
                    .revocation_last_sync
                    .set(self.revocations.last_sync_seconds());
                let evicted = self.revocations.evictions();
                let counted = self.metrics.revocation_evictions.get();
                self.metrics
                    .revocation_evictions
                    .inc_by(evicted.saturating_sub(counted));
                text(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            _ => text(
                404,
                "application/json",
                br#"{"error":"not_found","message":"No such resource."}"#.to_vec(),
            ),
        }
    }
}
