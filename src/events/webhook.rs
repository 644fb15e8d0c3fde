//! The security-event webhook (SPEC 11): each event of the configured types
//! is POSTed, signed, to `security_events.webhook.url` by background workers,
//! retried with backoff. Recording an event only pushes onto a bounded
//! in-memory queue, so a slow or dead receiver never touches a request.
//!
//! The queue holds every undelivered event, those waiting for a retry
//! included: only the (at most [`WORKERS`]) events being POSTed at this moment
//! are outside it. So "a full queue drops its oldest undelivered event" and "at
//! most `queue` events are held" hold whatever the receiver does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use tokio::time::Instant;
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

/// The order of recording, over every webhook of the process: an event a
/// reload hands over keeps its place by age among the new webhook's.
static RECORDED: AtomicU64 = AtomicU64::new(0);

/// One undelivered event: its id, the exact body that is signed, and how far
/// its delivery got.
struct Pending {
    /// Its place in the order of recording: the lowest queued is the oldest.
    seq: u64,
    id: HeaderValue,
    body: Bytes,
    /// Attempts made so far.
    attempts: u32,
    /// Not tried before this: when it was recorded, or when the backoff after
    /// its last failed attempt ends.
    not_before: Instant,
}

/// The undelivered events, by age, and which of them may be sent now.
///
/// Three views of the same events, so that each question is a lookup rather
/// than a scan of up to `queue` (1 000 000) events under the lock that
/// recording an event takes: the oldest (to drop), the oldest due (to send),
/// the earliest not-before (to wait for).
#[derive(Default)]
struct Queue {
    /// Every queued event, by `seq`.
    events: BTreeMap<u64, Pending>,
    /// Those whose `not_before` had passed when a worker last looked, by `seq`.
    due: BTreeSet<u64>,
    /// The others, by `(not_before, seq)`.
    waiting: BTreeSet<(Instant, u64)>,
}

/// What a worker is to do next.
enum Next {
    /// POST this event, the oldest that is due.
    Send(Pending),
    /// Nothing is due before this.
    WaitUntil(Instant),
    /// Nothing is queued.
    Idle,
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
    queue: Mutex<Queue>,
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
            queue: Mutex::new(Queue::default()),
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
    /// those waiting for a retry with their attempts and backoff; an event
    /// offered to it later, or put back after a failed attempt, comes here;
    /// and its workers stop.
    pub fn take_over(self: &Arc<Self>, old: &Webhook) {
        // Set before the queue is emptied: an event that finds the old queue
        // after that sees the successor (both happen under the queue's lock).
        let _ = old.successor.set(self.clone());
        let moved = std::mem::take(&mut *old.lock_queue());
        for p in moved.events.into_values() {
            self.push(p);
        }
        old.retire();
    }

    /// Stops the workers once they have sent what is queued.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `p` (a new event, or one back from a failed attempt) at its
    /// place by age, dropping the oldest undelivered event when full: that may
    /// be one waiting for its retry, or `p` itself. Once a reload replaced
    /// this webhook, `p` goes to the successor instead.
    fn push(&self, p: Pending) {
        let mut queue = self.lock_queue();
        if let Some(next) = self.successor.get() {
            drop(queue);
            return next.push(p);
        }
        let dropped = queue.insert(p, self.capacity);
        drop(queue);
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
            seq: RECORDED.fetch_add(1, Ordering::Relaxed),
            id,
            body: body.into(),
            attempts: 0,
            not_before: Instant::now(),
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

    /// Sends the oldest due event, one at a time, until retired and empty.
    /// With nothing due it sleeps until the earliest retry or a new event.
    async fn work(&self) {
        loop {
            // Registered before looking, so a `push` or `retire` in between is not missed.
            let mut woken = std::pin::pin!(self.ready.notified());
            woken.as_mut().enable();
            let next = self.lock_queue().take(Instant::now());
            match next {
                Next::Send(p) => self.attempt(p).await,
                Next::WaitUntil(at) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Next::Idle if self.retired.load(Ordering::Acquire) => return,
                Next::Idle => woken.await,
            }
        }
    }

    /// One POST of `p`, its outcome counted. Between attempts the event waits
    /// in the queue, not in the worker, so it stays subject to the queue's bound.
    async fn attempt(&self, mut p: Pending) {
        p.attempts += 1;
        match self.target.post(&p).await {
            Ok(status) if status.is_success() => self.metrics.webhook_delivery(Delivery::Ok),
            Ok(status) => self.failed(p, &format!("answered {status}")),
            Err(e) => self.failed(p, &e),
        }
    }

    /// After a failed attempt: the event goes back into the queue until its
    /// backoff is over, or is given up after the [`ATTEMPTS`]th.
    fn failed(&self, mut p: Pending, why: &str) {
        let attempt = p.attempts;
        if attempt >= ATTEMPTS {
            self.metrics.webhook_delivery(Delivery::Failed);
            tracing::error!(id = ?p.id, attempt, error = %why, "webhook: event given up");
            return;
        }
        let backoff = backoff_after(attempt);
        self.metrics.webhook_delivery(Delivery::Retried);
        tracing::warn!(id = ?p.id, attempt, error = %why, retry_in = ?backoff, "webhook: delivery failed");
        p.not_before = Instant::now() + backoff;
        self.push(p);
    }
}

/// The wait after failed attempt number `attempt`: 1 s, 2 s, 4 s … (SPEC 11).
fn backoff_after(attempt: u32) -> Duration {
    FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1))
}

impl Queue {
    /// Puts `p` at its place by age; when that makes more than `capacity`,
    /// takes out the oldest (which may be `p`) and returns it.
    fn insert(&mut self, p: Pending, capacity: usize) -> Option<Pending> {
        self.waiting.insert((p.not_before, p.seq));
        self.events.insert(p.seq, p);
        if self.events.len() > capacity {
            self.pop_oldest()
        } else {
            None
        }
    }

    /// Removes the oldest event, due or not.
    fn pop_oldest(&mut self) -> Option<Pending> {
        let (seq, p) = self.events.pop_first()?;
        if !self.due.remove(&seq) {
            self.waiting.remove(&(p.not_before, seq));
        }
        Some(p)
    }

    /// The oldest event due at `now`, taken out; else when the next will be.
    fn take(&mut self, now: Instant) -> Next {
        while let Some(&(at, seq)) = self.waiting.first() {
            if at > now {
                break;
            }
            self.waiting.pop_first();
            self.due.insert(seq);
        }
        if let Some(seq) = self.due.pop_first() {
            let p = self.events.remove(&seq).expect("a due event is queued");
            return Next::Send(p);
        }
        match self.waiting.first() {
            Some(&(at, _)) => Next::WaitUntil(at),
            None => Next::Idle,
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
        hook_of(url, 10)
    }

    fn hook_of(url: &str, queue: usize) -> Arc<Webhook> {
        let config = Config {
            url: url.parse().unwrap(),
            secret: "k".repeat(32).into(),
            types: vec!["login"],
            timeout: Duration::from_secs(1),
            queue,
        };
        Webhook::new(&config, Arc::new(Metrics::new())).unwrap()
    }

    /// What a worker would be handed at `now`: the event, or why none.
    fn take(hook: &Webhook, now: Instant) -> Result<Pending, String> {
        match hook.lock_queue().take(now) {
            Next::Send(p) => Ok(p),
            Next::WaitUntil(at) => Err(format!("nothing due for {:?}", at - now)),
            Next::Idle => Err("idle".into()),
        }
    }

    /// What a worker does with `p` when its POST is answered 500.
    fn fail(hook: &Webhook, mut p: Pending) {
        p.attempts += 1;
        hook.failed(p, "answered 500");
    }

    fn id(p: &Pending) -> &str {
        p.id.to_str().unwrap()
    }

    fn count(hook: &Webhook, result: Delivery) -> u64 {
        hook.metrics
            .webhook_deliveries
            .with_label_values(&[result.as_str()])
            .get()
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

    /// The queued ids, oldest first.
    fn queued(hook: &Webhook) -> Vec<String> {
        let queue = hook.lock_queue();
        queue.events.values().map(|p| id(p).to_owned()).collect()
    }

    /// With every event failing, a full queue drops the oldest undelivered
    /// ones, those waiting for their retry included: it keeps the newest.
    #[test]
    fn a_full_queue_drops_its_oldest_even_when_waiting_for_a_retry() {
        let hook = hook_of("http://127.0.0.1:1/a", 2);
        hook.offer(&login("e1"));
        hook.offer(&login("e2"));
        for _ in 0..2 {
            fail(&hook, take(&hook, Instant::now()).unwrap());
        }
        assert_eq!(queued(&hook), ["e1", "e2"], "waiting for their retry");
        hook.offer(&login("e3"));
        hook.offer(&login("e4"));
        assert_eq!(queued(&hook), ["e3", "e4"]);
        assert_eq!(count(&hook, Delivery::Dropped), 2);
        assert_eq!(count(&hook, Delivery::Retried), 2);
    }

    /// An event whose attempt fails while newer ones fill the queue is the
    /// oldest when it comes back: it is the one dropped.
    #[test]
    fn an_event_back_from_a_failed_attempt_into_a_full_queue_is_the_oldest() {
        let hook = hook_of("http://127.0.0.1:1/a", 2);
        hook.offer(&login("e1"));
        let sending = take(&hook, Instant::now()).unwrap();
        hook.offer(&login("e2"));
        hook.offer(&login("e3"));
        assert_eq!(count(&hook, Delivery::Dropped), 0, "e1 is being sent");
        fail(&hook, sending);
        assert_eq!(queued(&hook), ["e2", "e3"]);
        assert_eq!(count(&hook, Delivery::Dropped), 1);
    }

    /// Workers take the oldest due event: a retry whose backoff is over goes
    /// before newer events, one still in its backoff does not.
    #[test]
    fn a_due_retry_goes_first_and_one_not_yet_due_waits() {
        let hook = hook("http://127.0.0.1:1/a");
        hook.offer(&login("e1"));
        hook.offer(&login("e2"));
        let t = Instant::now();
        let (e1, e2) = (take(&hook, t).unwrap(), take(&hook, t).unwrap());
        fail(&hook, e1); // due after 1 s
        let mut e2 = e2;
        e2.attempts = 2;
        fail(&hook, e2); // its 3rd attempt: due after 4 s
        hook.offer(&login("e3"));
        hook.offer(&login("e4"));
        let t = Instant::now();
        assert_eq!(id(&take(&hook, t).unwrap()), "e3", "no retry is due yet");
        let a_second_later = t + Duration::from_secs(1);
        assert_eq!(id(&take(&hook, a_second_later).unwrap()), "e1");
        assert_eq!(id(&take(&hook, a_second_later).unwrap()), "e4");
        let err = take(&hook, a_second_later).err().unwrap();
        assert!(err.starts_with("nothing due"), "{err}");
        let e2 = take(&hook, t + Duration::from_secs(5)).unwrap();
        assert_eq!((id(&e2), e2.attempts), ("e2", 3));
        assert_eq!(
            take(&hook, t + Duration::from_secs(5)).err().unwrap(),
            "idle"
        );
    }

    /// The backoff doubles from 1 s; the 8th failed attempt gives the event up.
    #[test]
    fn retries_back_off_and_the_eighth_failure_gives_up() {
        assert_eq!(backoff_after(1), Duration::from_secs(1));
        assert_eq!(backoff_after(7), Duration::from_secs(64));
        let hook = hook("http://127.0.0.1:1/a");
        hook.offer(&login("e1"));
        let mut p = take(&hook, Instant::now()).unwrap();
        p.attempts = ATTEMPTS - 1;
        fail(&hook, p);
        assert!(queued(&hook).is_empty());
        assert_eq!(count(&hook, Delivery::Failed), 1);
        assert_eq!(count(&hook, Delivery::Retried), 0);
    }

    /// A reload hands over the events waiting for a retry too (with their
    /// attempts), and one whose attempt was under way comes back to the new
    /// webhook, at its place by age.
    #[test]
    fn a_replacement_takes_the_events_waiting_for_a_retry() {
        let (old, new) = (hook("http://127.0.0.1:1/a"), hook("http://127.0.0.1:1/b"));
        old.offer(&login("e1"));
        old.offer(&login("e2"));
        old.offer(&login("e3"));
        let e1 = take(&old, Instant::now()).unwrap();
        fail(&old, e1);
        let sending = take(&old, Instant::now()).unwrap();
        new.take_over(&old);
        old.offer(&login("e4"));
        assert_eq!(queued(&new), ["e1", "e3", "e4"]);
        fail(&old, sending);
        assert_eq!(queued(&new), ["e1", "e2", "e3", "e4"]);
        assert!(queued(&old).is_empty());
        let later = Instant::now() + Duration::from_secs(2);
        let attempts: Vec<_> = std::iter::from_fn(|| take(&new, later).ok())
            .map(|p| (id(&p).to_owned(), p.attempts))
            .collect();
        assert_eq!(
            attempts,
            [
                ("e1".into(), 1),
                ("e2".into(), 1),
                ("e3".into(), 0),
                ("e4".into(), 0)
            ]
        );
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
