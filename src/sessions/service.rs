//! Session logic with no HTTP in it: login, refresh rotation with reuse
//! detection and the grace window (SPEC 4.3), listing, revocation, logout.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;

use super::refresh_token;
use crate::auth::keys::TokenKey;
use crate::auth::sign::Signer;
use crate::auth::Verified;
use crate::config::Config;
use crate::errors::{ApiError, Internal};
use crate::events::{self, Events};
use crate::metrics::Metrics;
use crate::revocation::{Reason, RevocationList, Revoker};
use crate::store::{
    Activity, By, Lifetimes, RefreshOutcome, Scope, SecurityEvent, SessionRecord, SessionStore,
    StoreError,
};
use crate::time::{rfc3339_ms, unix_now_ms};

mod activity;
mod audit;
mod manage;
mod operator;
mod upstream;

pub use operator::valid_reason;

pub use activity::{EventPage, EventView};
pub use audit::{AuditEventPage, AuditEventView, EventFilter};

/// Who is asking, as far as the network tells.
#[derive(Clone, Debug)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

/// The longest User-Agent kept with a session or an event.
const MAX_USER_AGENT: usize = 512;

impl Client {
    /// A `User-Agent` header as stored with a session: printable, bounded.
    pub fn user_agent_of(header: Option<&http::HeaderValue>) -> String {
        header
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT)
            .collect()
    }
}

#[derive(Serialize, Debug)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: String,
}

#[derive(Serialize, Debug)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_active_at: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    /// Whether this is the caller's own session; absent in the operator
    /// API's listing, where there is no "own" session (SPEC 9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
}

/// One page of GET /v1/auth/sessions: `next` continues it, `None` on the last page.
#[derive(Serialize, Debug)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    pub next: Option<String>,
}

pub struct Sessions {
    store: Arc<dyn SessionStore>,
    /// Every key: the first MACs new refresh tokens and cursors, all check them.
    keys: Vec<Arc<TokenKey>>,
    signer: Signer,
    lifetimes: Lifetimes,
    max_per_user: usize,
    reuse_grace_ms: i64,
    notice_new_ip: bool,
    notice_new_device: bool,
    events_retain_ms: i64,
    revoker: Revoker,
    events: Events,
    metrics: Arc<Metrics>,
}

/// A failed store call as the client sees it; `store::timed` logged and
/// counted it with its cause.
fn unavailable(_logged: StoreError) -> ApiError {
    ApiError::StoreUnavailable
}

impl Sessions {
    pub fn new(
        config: &Config,
        keys: &[Arc<TokenKey>],
        store: Arc<dyn SessionStore>,
        revocations: Arc<RevocationList>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // The series an operator alerts on exist (at 0) from the start.
        for op in ["create", "get", "rotate", "revoke"] {
            metrics
                .store_errors
                .with_label_values(&[op, store.backend()]);
        }
        Sessions {
            events: Events::new(store.clone(), metrics.clone()),
            keys: keys.to_vec(),
            signer: Signer::new(&config.tokens, keys),
            lifetimes: Lifetimes {
                idle_ms: config.sessions.idle_timeout.as_millis() as i64,
                absolute_ms: config.sessions.absolute_lifetime.as_millis() as i64,
            },
            max_per_user: config.sessions.max_per_user,
            reuse_grace_ms: config.sessions.reuse_grace.as_millis() as i64,
            notice_new_ip: config.security_events.new_ip,
            notice_new_device: config.security_events.new_device,
            events_retain_ms: config.security_events.retain.as_millis() as i64,
            revoker: Revoker::new(revocations, store.clone(), metrics.clone()),
            store,
            metrics,
        }
    }

    /// Also sends the security events to `webhook` (SPEC 11).
    pub fn with_webhook(mut self, webhook: Option<Arc<crate::events::webhook::Webhook>>) -> Self {
        self.events = self.events.with_webhook(webhook);
        self
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Times a store call and turns its failure into 503 `store_unavailable`.
    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ApiError> {
        crate::store::timed(&self.metrics, self.store.backend(), op, f)
            .await
            .map_err(unavailable)
    }

    fn signing_key(&self) -> &TokenKey {
        &self.keys[0]
    }

    fn key_by_kid(&self, kid: &str) -> Option<&TokenKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| k.as_ref())
    }

    /// Creates a session for `subject` after the upstream accepted a login,
    /// ending the user's least recently active sessions beyond `max_per_user`.
    pub async fn login(
        &self,
        subject: &str,
        claims_json: String,
        client: &Client,
    ) -> Result<TokenResponse, ApiError> {
        let now = unix_now_ms();
        let key = self.signing_key();
        let record = SessionRecord {
            id: refresh_token::new_session_id(),
            user_id: subject.to_owned(),
            claims: claims_json,
            created_at: now,
            last_active_at: now,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            generation: 0,
            kid: key.kid.clone(),
            rotated_at: 0,
            revoked_at: None,
        };
        let ended = self
            .timed(
                "create",
                self.store
                    .create_capped(&record, self.max_per_user, self.lifetimes),
            )
            .await?;
        self.metrics.sessions_created.inc();
        self.event(events::LOGIN, &record.user_id, &record.id, client, now)
            .await;
        self.revoker.listed(&ended, Reason::Limit, now);
        for id in &ended {
            self.event_by(
                events::SESSION_REVOKED,
                &record.user_id,
                id,
                client,
                now,
                Some(By::Limit),
            )
            .await;
        }
        self.token_response(&record, key)
    }

    fn token_response(
        &self,
        s: &SessionRecord,
        refresh_key: &TokenKey,
    ) -> Result<TokenResponse, ApiError> {
        let refresh_token =
            refresh_token::issue(refresh_key, &s.id, s.generation).ok_or_else(|| {
                ApiError::Internal(Internal::new(format!(
                    "session {} has an id that cannot carry a refresh token",
                    s.id
                )))
            })?;
        Ok(TokenResponse {
            access_token: self.signer.sign(&s.user_id, &s.id, &s.claims)?,
            token_type: "Bearer",
            expires_in: self.signer.ttl_secs() as u64,
            refresh_token,
            session_id: s.id.clone(),
        })
    }

    /// POST /v1/auth/refresh (SPEC 4.2, 4.3).
    pub async fn refresh(&self, token: &str, client: &Client) -> Result<TokenResponse, ApiError> {
        let r = self.refresh_inner(token, client).await;
        let label = match &r {
            Ok((_, label)) => label,
            Err(ApiError::RefreshTokenReused) => "reused",
            Err(ApiError::SessionExpired) => "expired",
            Err(ApiError::SessionRevoked) => "revoked",
            Err(ApiError::StoreUnavailable) => "store_unavailable",
            Err(_) => "invalid",
        };
        self.metrics.refresh.with_label_values(&[label]).inc();
        r.map(|(t, _)| t)
    }

    async fn refresh_inner(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<(TokenResponse, &'static str), ApiError> {
        let presented = refresh_token::verify(token, self.keys.iter().map(|k| k.as_ref()))
            .ok_or(ApiError::InvalidRefreshToken)?;
        let now = unix_now_ms();
        let activity = Activity {
            at: now,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            kid: self.signing_key().kid.clone(),
        };
        // One store call reads, checks and (when the token is the current one
        // of a usable session) rotates; what it did not do is decided below.
        let outcome = self
            .timed(
                "rotate",
                self.store.refresh(
                    &presented.session_id,
                    presented.generation,
                    &activity,
                    self.lifetimes,
                ),
            )
            .await?;
        let current = match outcome {
            RefreshOutcome::Rotated { before, after } => {
                self.notice_changes(&before, client, now).await;
                return Ok((self.token_response(&after, self.signing_key())?, "rotated"));
            }
            // Our MAC proves the session existed: with its row gone (cleaned up
            // after it expired, or a Redis key that reached its TTL), it is over.
            RefreshOutcome::NotFound => return Err(ApiError::SessionExpired),
            RefreshOutcome::Unchanged(current) => current,
        };
        self.usable(&current, now)?;
        if presented.generation > current.generation {
            // A valid MAC on a future generation: the store lost writes. Refuse.
            tracing::error!(session_id = %current.id, "refresh token ahead of the stored generation");
            return Err(ApiError::InvalidRefreshToken);
        }
        if presented.generation == current.generation {
            // Usable by our clock yet not rotated: the store's expiry check
            // (same lifetimes, same time) disagreed. Fail closed.
            return Err(ApiError::SessionExpired);
        }
        // Another request rotated this token before us (a moment ago, or long ago).
        self.predecessor(&current, presented.generation, client, now)
            .await
    }

    /// A token older than the current one: the grace window, or reuse.
    async fn predecessor(
        &self,
        current: &SessionRecord,
        generation: u64,
        client: &Client,
        now: i64,
    ) -> Result<(TokenResponse, &'static str), ApiError> {
        let in_grace = self.reuse_grace_ms > 0
            && generation + 1 == current.generation
            && now - current.rotated_at < self.reuse_grace_ms;
        if in_grace {
            let key = self
                .key_by_kid(&current.kid)
                .ok_or(ApiError::InvalidRefreshToken)?;
            return Ok((self.token_response(current, key)?, "grace"));
        }
        self.revoker
            .listed(std::slice::from_ref(&current.id), Reason::Reuse, now);
        self.timed("revoke", self.store.revoke(&current.id, now))
            .await?;
        self.event(
            events::REFRESH_TOKEN_REUSE,
            &current.user_id,
            &current.id,
            client,
            now,
        )
        .await;
        Err(ApiError::RefreshTokenReused)
    }

    fn usable(&self, s: &SessionRecord, now: i64) -> Result<(), ApiError> {
        if s.revoked_at.is_some() {
            return Err(ApiError::SessionRevoked);
        }
        if self.lifetimes.is_expired(s, now) {
            return Err(ApiError::SessionExpired);
        }
        Ok(())
    }

    async fn notice_changes(&self, before: &SessionRecord, client: &Client, now: i64) {
        if self.notice_new_ip && before.ip != client.ip {
            self.event(events::NEW_IP, &before.user_id, &before.id, client, now)
                .await;
        }
        if self.notice_new_device && before.user_agent != client.user_agent {
            self.event(events::NEW_DEVICE, &before.user_id, &before.id, client, now)
                .await;
        }
    }

    async fn event(
        &self,
        kind: &'static str,
        user_id: &str,
        session_id: &str,
        client: &Client,
        at: i64,
    ) {
        self.event_by(kind, user_id, session_id, client, at, None)
            .await;
    }

    /// An event that records who asked for it (`by`, SPEC 8).
    async fn event_by(
        &self,
        kind: &'static str,
        user_id: &str,
        session_id: &str,
        client: &Client,
        at: i64,
        by: Option<By>,
    ) {
        self.events
            .record(SecurityEvent {
                id: events::new_id(),
                kind,
                user_id: user_id.to_owned(),
                session_id: session_id.to_owned(),
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
                at,
                by,
                reason: None,
                scope: None,
            })
            .await;
    }

    /// Deletes expired sessions, revoked ones no token can use, and old events.
    pub async fn cleanup(&self) -> Result<u64, ApiError> {
        let now = unix_now_ms();
        let revoked_before = now - self.lifetimes.absolute_ms.max(self.lifetimes.idle_ms);
        let n = self
            .timed(
                "cleanup",
                self.store.cleanup(
                    now,
                    self.lifetimes,
                    revoked_before,
                    now - self.events_retain_ms,
                ),
            )
            .await?;
        self.revoker.sweep();
        Ok(n)
    }
}
