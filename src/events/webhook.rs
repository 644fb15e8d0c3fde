//! The security-event webhook (SPEC 11): each event of the configured types
//! is POSTed, signed, to `security_events.webhook.url` by background workers,
//! retried with backoff. Recording an event only pushes onto a bounded
//! in-memory queue, so a slow or dead receiver never touches a request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;

use crate::config::WebhookConfig as Config;
use crate::metrics::{Delivery, Metrics};
use crate::shutdown::ShutdownWatch;
use crate::store::{By, Scope, SecurityEvent};
use crate::time::{rfc3339_ms, unix_now};

/// Attempts per event, the first included (SPEC 11).
const ATTEMPTS: u32 = 8;
/// The wait after the first failed attempt; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Events in flight at once: one receiver stalling on an event does not hold
/// back every other, and a dead one gets at most this many connections.
const WORKERS: usize = 4;

/// One event on its way: its id and the exact body that is signed.
struct Pending {
    id: HeaderValue,
    body: Bytes,
}

/// The body: the event's fields, `by`/`reason`/`scope` only where they apply.
#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    at: String,
    user_id: &'a str,
    session_id: &'a str,
    ip: &'a str,
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

pub struct Webhook {
    queue: Mutex<VecDeque<Pending>>,
    ready: Notify,
    capacity: usize,
    types: Vec<&'static str>,
    target: Target,
    metrics: Arc<Metrics>,
    /// The webhook a reload replaced this one with: later events go there.
    successor: OnceLock<Arc<Webhook>>,
    /// Replaced or removed by a reload: workers stop once the queue is empty.
    retired: AtomicBool,
}

/// Where and how a POST goes.
struct Target {
    addr: (String, u16),
    authority: HeaderValue,
    path: Uri,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    key: hmac::Key,
    timeout: Duration,
}

impl Webhook {
    /// Ready to take events; nothing is sent until [`Webhook::spawn_workers`].
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<Webhook>, String> {
        let url = &config.url;
        let https = url.scheme_str() == Some("https");
        let host = url.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let client =
                crate::tls::upstream_client_config(None).map_err(|e| format!("url: {e}"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("url: the host is not a TLS server name: {e}"))?;
            Some((TlsConnector::from(Arc::new(client)), name))
        } else {
            None
        };
        let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        Ok(Arc::new(Webhook {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: config.queue,
            types: config.types.clone(),
            target: Target {
                addr: (host, port),
                authority: HeaderValue::from_str(authority).map_err(|e| format!("url: {e}"))?,
                path: path.parse().map_err(|e| format!("url: {e}"))?,
                tls,
                key: hmac::Key::new(hmac::HMAC_SHA256, config.secret.expose_secret().as_bytes()),
                timeout: config.timeout,
            },
            metrics,
            successor: OnceLock::new(),
            retired: AtomicBool::new(false),
        }))
    }

    /// A reload replaced `old` with this webhook: its undelivered events move
    /// here (they are sent to the new receiver, signed with the new secret),
    /// an event offered to it later comes here, and its workers stop.
    pub fn take_over(self: &Arc<Self>, old: &Webhook) {
        // Set before the queue is emptied: an offer that finds the old queue
        // after that sees the successor (both happen under the queue's lock).
        let _ = old.successor.set(self.clone());
        let moved = std::mem::take(&mut *old.lock_queue());
        for p in moved {
            self.push(p);
        }
        old.retire();
    }

    /// Stops the workers once they have sent what is queued.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `p`, dropping the oldest event when full.
    fn push(&self, p: Pending) {
        let dropped = {
            let mut queue = self.lock_queue();
            let dropped = if queue.len() >= self.capacity {
                queue.pop_front()
            } else {
                None
            };
            queue.push_back(p);
            dropped
        };
        if let Some(old) = dropped {
            self.metrics.webhook_delivery(Delivery::Dropped);
            tracing::warn!(id = ?old.id, "webhook queue full: oldest undelivered event dropped");
        }
        self.ready.notify_one();
    }

    /// Queues `event` if its type is sent; never waits. A full queue drops its oldest.
    pub fn offer(&self, event: &SecurityEvent) {
        if let Some(next) = self.successor.get() {
            return next.offer(event);
        }
        if !self.types.contains(&event.kind) {
            return;
        }
        let Ok(id) = HeaderValue::from_str(&event.id) else {
            return; // ids are base64url: cannot happen
        };
        let body = serde_json::to_vec(&Payload {
            id: &event.id,
            kind: event.kind,
            at: rfc3339_ms(event.at),
            user_id: &event.user_id,
            session_id: &event.session_id,
            ip: &event.ip,
            user_agent: &event.user_agent,
            by: event.by.map(By::as_str),
            reason: event.reason.as_deref(),
            scope: event.scope.map(Scope::as_str),
        })
        .expect("an event serializes");
        self.push(Pending {
            id,
            body: body.into(),
        });
    }

    /// Starts the delivery workers on the current runtime; they stop at shutdown.
    pub fn spawn_workers(self: &Arc<Self>, shutdown: ShutdownWatch) {
        for _ in 0..WORKERS {
            let hook = self.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = hook.work() => {}
                }
            });
        }
    }

    async fn work(&self) {
        loop {
            // Registered before looking, so a `retire` in between is not missed.
            let mut woken = std::pin::pin!(self.ready.notified());
            woken.as_mut().enable();
            let next = self.lock_queue().pop_front();
            match next {
                Some(p) => self.deliver(p).await,
                None if self.retired.load(Ordering::Acquire) => return,
                None => woken.await,
            }
        }
    }

    /// Up to [`ATTEMPTS`] POSTs of one event, each outcome counted.
    async fn deliver(&self, p: Pending) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let why = match self.target.post(&p).await {
                Ok(status) if status.is_success() => {
                    self.metrics.webhook_delivery(Delivery::Ok);
                    return;
                }
                Ok(status) => format!("answered {status}"),
                Err(e) => e,
            };
            if attempt == ATTEMPTS {
                self.metrics.webhook_delivery(Delivery::Failed);
                tracing::error!(id = ?p.id, attempt, error = %why, "webhook: event given up");
                return;
            }
            self.metrics.webhook_delivery(Delivery::Retried);
            tracing::warn!(id = ?p.id, attempt, error = %why, retry_in = ?backoff, "webhook: delivery failed");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

impl Target {
    /// One signed POST on a new connection; the answer's status, or why there was none
    /// within `timeout`.
    async fn post(&self, p: &Pending) -> Result<http::StatusCode, String> {
        let t = unix_now();
        let request = Request::post(self.path.clone())
            .header(HOST, self.authority.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("sessiongate/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-sessiongate-event-id", p.id.clone())
            .header(
                "x-sessiongate-signature",
                format!("t={t},v1={}", sign(&self.key, t, &p.body)),
            )
            .body(Full::new(p.body.clone()))
            .map_err(|e| e.to_string())?;
        let attempt = async {
            let tcp = TcpStream::connect((self.addr.0.as_str(), self.addr.1)).await?;
            tcp.set_nodelay(true)?;
            match &self.tls {
                None => send(tcp, request).await,
                Some((connector, name)) => {
                    send(connector.connect(name.clone(), tcp).await?, request).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// HTTP/1.1 over `io`: the response status (its body is not read).
async fn send<I>(io: I, request: Request<Full<Bytes>>) -> std::io::Result<http::StatusCode>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    let conn = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    conn.abort();
    answer.map(|r| r.status()).map_err(std::io::Error::other)
}

/// SPEC 11's `v1`: hex HMAC-SHA256 of `"<t>.<body>"`.
fn sign(key: &hmac::Key, t: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Arc<Webhook> {
        let config = Config {
            url: url.parse().unwrap(),
            secret: "k".repeat(32).into(),
            types: vec!["login"],
            timeout: Duration::from_secs(1),
            queue: 10,
        };
        Webhook::new(&config, Arc::new(Metrics::new())).unwrap()
    }

    fn login(id: &str) -> SecurityEvent {
        SecurityEvent {
            id: id.into(),
            kind: "login",
            user_id: "u".into(),
            session_id: "s".into(),
            ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            at: 0,
            by: None,
            reason: None,
            scope: None,
        }
    }

    fn queued(hook: &Webhook) -> Vec<String> {
        let queue = hook.lock_queue();
        queue
            .iter()
            .map(|p| p.id.to_str().unwrap().to_owned())
            .collect()
    }

    /// A reload loses no event: what was queued moves to the new webhook,
    /// and an event offered to the old one afterwards goes there too.
    #[test]
    fn a_replacement_takes_the_queue_and_later_events() {
        let (old, new) = (hook("http://127.0.0.1:1/a"), hook("http://127.0.0.1:1/b"));
        old.offer(&login("e1"));
        new.take_over(&old);
        old.offer(&login("e2"));
        assert_eq!(queued(&new), ["e1", "e2"]);
        assert!(queued(&old).is_empty());
        assert!(old.retired.load(Ordering::Acquire));
    }

    /// A retired webhook's workers send what is queued, then stop.
    #[tokio::test]
    async fn retired_workers_stop_once_idle() {
        let hook = hook("http://127.0.0.1:1/a");
        hook.retire();
        tokio::time::timeout(Duration::from_secs(5), hook.work())
            .await
            .expect("an idle retired worker returns");
    }

    /// `v1` is HMAC-SHA256 over exactly "<t>.<body>", hex-encoded.
    #[test]
    fn signs_timestamp_dot_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let whole = hmac::sign(&key, b"1700000000.{\"id\":\"x\"}");
        assert_eq!(
            sign(&key, 1_700_000_000, b"{\"id\":\"x\"}"),
            hex::encode(whole.as_ref())
        );
    }
}
