//! The session store contract. Every backend implements [`SessionStore`] with
//! the same semantics, and one generic test suite (tests/store_contract.rs)
//! holds them to it.
//!
//! Semantics:
//! - A session row never holds a refresh token: only its rotation
//!   `generation` and the `kid` of the key that MACs the current token.
//! - `refresh` reads, checks and rotates in one atomic step: of any number
//!   of concurrent calls presenting the same generation, at most one moves
//!   the session on, and none does once it is revoked or expired.
//! - A revoked session stays revoked; revocation time is kept so that
//!   `revoked_since` can rebuild the in-memory revocation list after a restart.
//! - `create_capped` keeps at most `max_per_user` active sessions per user:
//!   the new one, plus the most recently active others. SQLite holds that
//!   exactly (one write transaction); Redis converges to it (see redis.rs).
//! - Listings are pages in `(created_at, id)` order (events: `(at, id)`),
//!   newest first, starting strictly after a [`Position`]: nothing loads all
//!   of a user's rows.

pub mod feed;
pub mod redis;
pub mod sqlite;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::RateLimitConfig;

/// A session as stored. Times are unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    /// The extra claims from login, a compact JSON object.
    pub claims: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub ip: String,
    pub user_agent: String,
    pub generation: u64,
    pub kid: String,
    /// When the current generation was reached (0 before the first rotation).
    pub rotated_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a refresh writes besides the new generation.
#[derive(Clone, Debug)]
pub struct Activity {
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
    pub kid: String,
}

impl SessionRecord {
    /// The row after a rotation with `a`: what every backend writes.
    pub fn rotated(&self, a: &Activity) -> SessionRecord {
        SessionRecord {
            generation: self.generation.saturating_add(1),
            rotated_at: a.at,
            last_active_at: a.at,
            ip: a.ip.clone(),
            user_agent: a.user_agent.clone(),
            kid: a.kid.clone(),
            ..self.clone()
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The session moved from the presented generation to the next: the row
    /// as it was (its previous ip and user agent) and as it is now.
    Rotated {
        before: SessionRecord,
        after: SessionRecord,
    },
    /// Nothing was written: the session is revoked, expired, or at another
    /// generation than the presented one. The row as it is.
    Unchanged(SessionRecord),
    /// No such session (never was, or deleted after it ended).
    NotFound,
}

/// Who asked for a revocation (SPEC 8's `by`). `Limit`: a login beyond
/// `sessions.max_per_user` ended the user's least recently active session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    User,
    Admin,
    Upstream,
    Limit,
}

impl By {
    pub const ALL: [By; 4] = [By::User, By::Admin, By::Upstream, By::Limit];

    pub fn as_str(self) -> &'static str {
        match self {
            By::User => "user",
            By::Admin => "admin",
            By::Upstream => "upstream",
            By::Limit => "limit",
        }
    }

    /// Stored text back to the value; unknown text is `None` (never an error).
    pub fn parse(s: &str) -> Option<By> {
        By::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// Which sessions an upstream-requested revocation ended (SPEC 10's `scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Current,
    Others,
    All,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Current, Scope::Others, Scope::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Current => "current",
            Scope::Others => "others",
            Scope::All => "all",
        }
    }

    /// Stored text back to the value; unknown text is `None` (never an error).
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A security event. Optional details (`by`, `reason`, `scope`) are `None`
/// where they do not apply; each backend stores them in a nullable column /
/// optional field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Unique and random (sessiongate's `events::new_id`); with `at` it orders a listing.
    pub id: String,
    pub kind: &'static str,
    pub user_id: String,
    pub session_id: String,
    pub ip: String,
    pub user_agent: String,
    pub at: i64,
    pub by: Option<By>,
    /// Why an operator asked (SPEC 9's `reason`, `[a-z0-9_]{1,64}`).
    pub reason: Option<String>,
    pub scope: Option<Scope>,
}

/// A place in a newest-first listing: the page holds what comes strictly after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The row's time: a session's `created_at`, an event's `at`.
    pub created_at: i64,
    pub id: String,
}

impl Position {
    pub fn of(s: &SessionRecord) -> Position {
        Position {
            created_at: s.created_at,
            id: s.id.clone(),
        }
    }

    pub fn of_event(e: &SecurityEvent) -> Position {
        Position {
            created_at: e.at,
            id: e.id.clone(),
        }
    }

    /// Whether `(created_at, id)` sorts after this position in newest-first order.
    pub fn precedes(&self, created_at: i64, id: &str) -> bool {
        (created_at, id) < (self.created_at, self.id.as_str())
    }
}

/// Why a store call failed, with the backend's own error as its source. The
/// message carries the cause too, so one log line or CLI message says it all.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("session store unavailable: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A Redis command or connection failed.
    #[error("session store unavailable: redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Something the store needs around its backend (a folder, a file, a
    /// runtime, a task) failed while doing `what`.
    #[error("session store unavailable: {what}: {source}")]
    Io {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store holds or answered something this sessiongate cannot use, or
    /// cannot answer in time.
    #[error("session store unavailable: {0}")]
    Invalid(String),
}

impl StoreError {
    /// `source` failed while doing `what`.
    pub fn io(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Runs one store call `op`, timing it into `sessiongate_store_duration_seconds`;
/// a failure is counted in `sessiongate_store_errors_total` and logged once, here.
pub async fn timed<T>(
    metrics: &crate::metrics::Metrics,
    backend: &'static str,
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = std::time::Instant::now();
    let r = call.await;
    metrics
        .store_duration
        .with_label_values(&[op, backend])
        .observe(start.elapsed().as_secs_f64());
    if let Err(e) = &r {
        metrics.store_errors.with_label_values(&[op, backend]).inc();
        tracing::error!(op, error = %e, "session store call failed");
    }
    r
}

/// Limits that decide whether a session is still usable.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

impl Lifetimes {
    pub fn expires_at(&self, s: &SessionRecord) -> i64 {
        (s.created_at + self.absolute_ms).min(s.last_active_at + self.idle_ms)
    }

    pub fn is_expired(&self, s: &SessionRecord, now_ms: i64) -> bool {
        now_ms >= self.expires_at(s)
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The backend's name for metrics (`sqlite`, `redis`).
    fn backend(&self) -> &'static str;

    async fn create(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// Creates `session`, then revokes (at its `created_at`) its user's least
    /// recently active other sessions beyond `max_per_user` active ones.
    /// Returns the ids this call revoked.
    async fn create_capped(
        &self,
        session: &SessionRecord,
        max_per_user: usize,
        lifetimes: Lifetimes,
    ) -> Result<Vec<String>, StoreError>;

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// A refresh's one store call (SPEC 4.3), atomic: reads session `id` and,
    /// only when it is unrevoked, not expired at `activity.at` (by
    /// `lifetimes`, as [`Lifetimes::is_expired`] says) and at generation
    /// `presented`, moves it to the next generation with `activity`. Also
    /// records the activity for the per-user cap's order.
    async fn refresh(
        &self,
        id: &str,
        presented: u64,
        activity: &Activity,
        lifetimes: Lifetimes,
    ) -> Result<RefreshOutcome, StoreError>;

    /// Revokes one session. Returns false when it was unknown or already revoked.
    async fn revoke(&self, id: &str, at: i64) -> Result<bool, StoreError>;

    /// Makes every replica refuse the tokens of session `id`, which the store
    /// does not hold (any more): it ended and was dropped, or the store lost
    /// it, while its last access tokens may still be valid. A store shared by
    /// replicas logs and broadcasts it like a revocation; a local one has no
    /// one else to tell (the caller's own list is enough).
    async fn stop_tokens(&self, _id: &str, _at: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Revokes every unrevoked session of `user_id` but `except`; returns their ids.
    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` of the user's sessions that are neither revoked nor
    /// expired, newest first (`created_at`, then `id`, descending), starting
    /// after `after` (the last row of the previous page).
    async fn list_active(
        &self,
        user_id: &str,
        now: i64,
        lifetimes: Lifetimes,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// (session id, revoked_at) of sessions revoked at or after `since`.
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StoreError>;

    async fn record_event(&self, event: &SecurityEvent) -> Result<(), StoreError>;

    /// Up to `limit` of the user's events, newest first (`at`, then `id`,
    /// descending), starting after `after` (the last row of the previous page).
    async fn events_page(
        &self,
        user_id: &str,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError>;

    /// The user's newest events (for audits and tests).
    /// Up to `limit` events of every user, newest first (`at`, then `id`,
    /// descending), starting after `after`: the operator's listing (SPEC 9).
    async fn all_events_page(
        &self,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError>;

    async fn events_for_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        self.events_page(user_id, None, limit).await
    }

    /// Deletes expired sessions, revoked ones older than `revoked_before`, and
    /// events older than `events_before`. Returns how many rows went.
    async fn cleanup(
        &self,
        now: i64,
        lifetimes: Lifetimes,
        revoked_before: i64,
        events_before: i64,
    ) -> Result<u64, StoreError>;

    /// Cheap liveness check for /readyz.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything written durable before the process exits.
    async fn flush(&self) -> Result<(), StoreError>;

    /// The rate-limit buckets every replica shares, for a store that several
    /// replicas use (Redis); `None`: each process keeps its own (SQLite).
    fn shared_buckets(self: Arc<Self>) -> Option<Arc<dyn SharedBuckets>> {
        None
    }
}

/// Token buckets per (route, client IP) that all replicas share (SPEC 2
/// `rate_limits` with Redis), with the local buckets' semantics: `burst`
/// tokens, refilled at `per_minute`, one taken per request.
#[async_trait]
pub trait SharedBuckets: Send + Sync {
    /// Takes a token from the bucket of `route` and `ip` in one round trip:
    /// `Ok(Ok(()))` to go ahead, `Ok(Err(seconds))` to wait that long first.
    async fn take(
        &self,
        route: &'static str,
        ip: IpAddr,
        limit: RateLimitConfig,
    ) -> Result<Result<(), u64>, StoreError>;
}
