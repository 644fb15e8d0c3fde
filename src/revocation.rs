//! The in-memory revocation list (SPEC 5): checked on every proxied request
//! without a store round trip. An entry lives until the last access token it
//! could match has expired, so the list stays bounded by recent revocations.
//! With a shared store the list also knows how fresh it is (see [`sync`]).

pub mod sync;
mod table;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::{SessionStore, StoreError};
use crate::time::{unix_now, unix_now_ms};
use table::{key_of, Table};

/// How the revocation list knows a session: 16 bytes made from its id.
pub use table::Key as SessionKey;

/// The [`SessionKey`] of `session_id`.
pub fn session_key(session_id: &str) -> SessionKey {
    key_of(session_id)
}

pub struct RevocationList {
    /// session id -> unix time after which no access token of it can be valid.
    sessions: Table,
    /// How long after a revocation an access token of the session may still
    /// be presented, as configured at start; entries expire by it.
    token_lifetime: i64,
    /// How much a reload has lengthened that (never negative): every entry
    /// counts as this much longer-lived, so a longer TTL or leeway never lets
    /// a token of a session revoked earlier pass again.
    lifetime_growth: AtomicI64,
    freshness: Freshness,
}

/// How long ago the list was last known to hold every revocation in the store.
/// A local store (SQLite) writes through this very list: always fresh.
struct Freshness {
    /// `None`: always fresh. Else the bound in milliseconds.
    bound_ms: Option<i64>,
    /// Unix ms of the last successful sync; 0 = never.
    synced_at_ms: AtomicI64,
}

/// Why the list may not be trusted right now.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    NeverSynced,
    For { seconds: i64 },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::NeverSynced => write!(
                f,
                "the revocation list has not been synced with the store yet"
            ),
            Stale::For { seconds } => {
                write!(f, "the revocation list was last synced {seconds}s ago")
            }
        }
    }
}

/// Whole seconds an entry is held after its revocation, for tokens that live
/// `token_lifetime` (access TTL plus leeway). A token is accepted through the
/// whole second `exp + leeway` (the check compares whole seconds, and a token
/// may be issued in the second of the revocation), so the entry must still
/// match in that second: one more than the lifetime.
fn held_for(token_lifetime: Duration) -> i64 {
    token_lifetime.as_secs() as i64 + 1
}

impl RevocationList {
    /// `token_lifetime`: access TTL plus leeway.
    pub fn new(capacity: u64, token_lifetime: Duration) -> Self {
        let token_lifetime = held_for(token_lifetime);
        RevocationList {
            sessions: Table::new(capacity, unix_now() - token_lifetime),
            token_lifetime,
            lifetime_growth: AtomicI64::new(0),
            freshness: Freshness {
                bound_ms: None,
                synced_at_ms: AtomicI64::new(0),
            },
        }
    }

    /// A list fed from a shared store: trusted only while its last sync is at
    /// most `max_staleness` old, and not before the first one.
    pub fn tracking_freshness(mut self, max_staleness: Duration) -> Self {
        self.freshness.bound_ms = Some(max_staleness.as_millis() as i64);
        self
    }

    /// A reload's access TTL plus leeway: entries are kept at least that long
    /// from now on. A shorter lifetime keeps the longest one seen (fail closed).
    pub fn extend_token_lifetime(&self, token_lifetime: Duration) {
        let growth = (held_for(token_lifetime) - self.token_lifetime).max(0);
        self.lifetime_growth.fetch_max(growth, Ordering::AcqRel);
    }

    /// "Now" as entries' expiries see it: earlier by the lifetime's growth.
    fn entry_clock(&self) -> i64 {
        unix_now() - self.lifetime_growth.load(Ordering::Relaxed)
    }

    /// Records that at unix ms `at` the list held every revocation in the store.
    pub fn mark_synced(&self, at: i64) {
        self.freshness.synced_at_ms.fetch_max(at, Ordering::AcqRel);
    }

    /// Whether the list is fed from a shared store (and so may go stale).
    pub fn tracks_freshness(&self) -> bool {
        self.freshness.bound_ms.is_some()
    }

    /// One atomic load: cheap enough for every proxied request.
    pub fn check_fresh(&self, now_ms: i64) -> Result<(), Stale> {
        let Some(bound) = self.freshness.bound_ms else {
            return Ok(());
        };
        match self.freshness.synced_at_ms.load(Ordering::Acquire) {
            0 => Err(Stale::NeverSynced),
            at if now_ms - at > bound => Err(Stale::For {
                seconds: (now_ms - at) / 1000,
            }),
            _ => Ok(()),
        }
    }

    /// Seconds since the last sync (0 for a local store), for the staleness gauge.
    pub fn staleness_seconds(&self) -> f64 {
        if self.freshness.bound_ms.is_none() {
            return 0.0;
        }
        match self.freshness.synced_at_ms.load(Ordering::Acquire) {
            0 => f64::INFINITY,
            at => (unix_now_ms() - at).max(0) as f64 / 1000.0,
        }
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.is_revoked_key(&key_of(session_id), unix_now())
    }

    /// [`Self::is_revoked`] for a session's [`session_key`], at unix time
    /// `now`: the token check makes the key once per verified token and
    /// reads the clock once per request.
    pub fn is_revoked_key(&self, key: &SessionKey, now: i64) -> bool {
        let entry_now = now - self.lifetime_growth.load(Ordering::Relaxed);
        self.sessions.contains(key, entry_now)
    }

    /// Records that `session_id` was revoked at unix time `revoked_at`.
    /// Returns false when no token of it can still be valid (nothing to remember).
    pub fn insert(&self, session_id: &str, revoked_at: i64) -> bool {
        let until = revoked_at + self.token_lifetime;
        let now = self.entry_clock();
        if until <= now {
            return false;
        }
        self.sessions.insert(key_of(session_id), until, now);
        true
    }

    /// The horizon for loading revocations from the store: older ones are harmless.
    pub fn horizon(&self) -> i64 {
        self.entry_clock() - self.token_lifetime
    }

    /// Entries held (expired ones are ignored at once and dropped by [`Self::sweep`]).
    pub fn len(&self) -> u64 {
        self.sessions.len() as u64
    }

    /// Drops entries no token can match any more; returns how many remain.
    pub fn sweep(&self) -> u64 {
        self.sessions.sweep(self.entry_clock()) as u64
    }

    /// Unexpired revocations evicted because the list was full.
    pub fn evictions(&self) -> u64 {
        self.sessions.evictions()
    }

    /// Unix seconds of the last confirmed sync with a shared store; a local
    /// store is always in sync, so now.
    pub fn last_sync_seconds(&self) -> f64 {
        if self.freshness.bound_ms.is_none() {
            return unix_now_ms() as f64 / 1000.0;
        }
        self.freshness.synced_at_ms.load(Ordering::Acquire) as f64 / 1000.0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fills a [`RevocationList`] from the store's revocation log: at start, on
/// a resync, and (SQLite) from the recent revocations of other processes.
#[derive(Clone)]
pub struct Loader {
    pub list: Arc<RevocationList>,
    pub store: Arc<dyn SessionStore>,
    pub metrics: Arc<Metrics>,
}

impl Loader {
    /// Loads revocations whose tokens may still be presented.
    pub async fn load(&self) -> Result<usize, StoreError> {
        self.load_since(self.list.horizon() * 1000).await
    }

    /// Adds the revocations written at or after unix ms `since` (by this
    /// process or another one on the same store, such as the CLI).
    pub async fn load_since(&self, since: i64) -> Result<usize, StoreError> {
        let since = since.max(self.list.horizon() * 1000);
        let call = self.store.revoked_since(since);
        let rows =
            crate::store::timed(&self.metrics, self.store.backend(), "revoked_since", call).await?;
        let n = rows
            .iter()
            .filter(|(id, at)| self.list.insert(id, at / 1000))
            .count();
        self.metrics.revocation_entries.set(self.list.len() as i64);
        Ok(n)
    }
}

/// Why sessions are revoked: the `reason` label of
/// `sessiongate_sessions_revoked_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    User,
    RevokeAll,
    Logout,
    Reuse,
    /// A login beyond `sessions.max_per_user`.
    Limit,
    /// The operator API (SPEC 9).
    Admin,
    /// The upstream's revoke header (SPEC 10).
    Upstream,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::User => "user",
            Reason::RevokeAll => "revoke_all",
            Reason::Logout => "logout",
            Reason::Reuse => "reuse",
            Reason::Limit => "limit",
            Reason::Admin => "admin",
            Reason::Upstream => "upstream",
        }
    }
}

/// Revokes sessions: the store write, the list entry that stops their
/// tokens at once, and the metrics that count them. Times are unix ms.
#[derive(Clone)]
pub struct Revoker {
    list: Arc<RevocationList>,
    store: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

impl Revoker {
    pub fn new(
        list: Arc<RevocationList>,
        store: Arc<dyn SessionStore>,
        metrics: Arc<Metrics>,
    ) -> Revoker {
        Revoker {
            list,
            store,
            metrics,
        }
    }

    /// Revokes session `id`: the store first (a revocation that is not
    /// written must not be reported as done), then the list. `Ok(false)`: it
    /// had ended already; its tokens stop all the same, uncounted.
    pub async fn revoke(&self, id: &str, reason: Reason, now: i64) -> Result<bool, StoreError> {
        let call = self.store.revoke(id, now);
        let changed =
            crate::store::timed(&self.metrics, self.store.backend(), "revoke", call).await?;
        if changed {
            self.listed(&[id.to_owned()], reason, now);
        } else {
            self.stop_tokens(id, now).await?;
        }
        Ok(changed)
    }

    /// Revokes every active session of `user_id` but `except`: the ids revoked.
    /// `caller`: the session the request came with. Its tokens stop too
    /// (unless it is `except`) when the store no longer holds it and so
    /// revoked nothing of it: its last access tokens outlive its record.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&str>,
        caller: Option<&str>,
        reason: Reason,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let call = self.store.revoke_user(user_id, except, now);
        let ids =
            crate::store::timed(&self.metrics, self.store.backend(), "revoke_user", call).await?;
        self.listed(&ids, reason, now);
        if let Some(sid) = caller.filter(|c| Some(*c) != except && !ids.iter().any(|i| i == c)) {
            self.stop_tokens(sid, now).await?;
        }
        Ok(ids)
    }

    /// Puts `ids` on the list at once and counts them; their store write is
    /// the caller's (done already, or, for a reused token, still to come).
    pub fn listed(&self, ids: &[String], reason: Reason, now: i64) {
        if ids.is_empty() {
            return;
        }
        for id in ids {
            self.list.insert(id, now / 1000);
        }
        self.metrics
            .sessions_revoked
            .with_label_values(&[reason.label()])
            .inc_by(ids.len() as u64);
        self.metrics.revocation_entries.set(self.list.len() as i64);
    }

    /// Stops the tokens of a session that ended before (or is no longer in
    /// the store), on every replica; nothing is counted. The store first, as
    /// for a revocation: one that other replicas cannot learn of is an error.
    pub async fn stop_tokens(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let call = self.store.stop_tokens(id, now);
        crate::store::timed(&self.metrics, self.store.backend(), "revoke", call).await?;
        self.list.insert(id, now / 1000);
        self.metrics.revocation_entries.set(self.list.len() as i64);
        Ok(())
    }

    /// Drops the entries no token can match any more.
    pub fn sweep(&self) {
        self.metrics
            .revocation_entries
            .set(self.list.sweep() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_longer_token_lifetime_keeps_earlier_revocations_longer() {
        let list = RevocationList::new(1000, Duration::from_secs(60));
        let at = unix_now() - 90;
        assert!(!list.insert("s1", at), "past the 60 s lifetime: harmless");
        list.extend_token_lifetime(Duration::from_secs(120));
        assert!(list.insert("s1", at), "within the reloaded 120 s lifetime");
        assert!(list.is_revoked("s1"));
        assert!(list.horizon() <= unix_now() - 120);
        list.extend_token_lifetime(Duration::from_secs(10));
        assert!(list.is_revoked("s1"), "a shorter lifetime never forgets");
        assert_eq!(list.sweep(), 1);
    }

    #[test]
    fn a_revoked_session_is_found_until_its_tokens_expire() {
        let list = RevocationList::new(1000, Duration::from_secs(60));
        assert!(list.insert("s1", unix_now()));
        assert!(list.is_revoked("s1"));
        assert!(!list.is_revoked("s2"));
        assert!(
            !list.insert("old", unix_now() - 120),
            "a harmless revocation is not kept"
        );
        assert!(!list.is_revoked("old"));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn an_entry_matches_through_the_last_second_a_token_is_accepted() {
        // A token issued in the second of the revocation, exp = iat + TTL,
        // is accepted while now <= exp + leeway (whole seconds).
        let (ttl, leeway) = (2, 3);
        let list = RevocationList::new(1000, Duration::from_secs(ttl + leeway));
        let at = unix_now();
        assert!(list.insert("s1", at));
        let key = session_key("s1");
        let last_accepted = at + (ttl + leeway) as i64;
        for now in at..=last_accepted {
            assert!(
                list.is_revoked_key(&key, now),
                "not revoked at +{}s",
                now - at
            );
        }
        assert!(!list.is_revoked_key(&key, last_accepted + 1));
        assert!(
            !list.insert("s2", at - (ttl + leeway) as i64 - 1),
            "no token of it is accepted"
        );
    }

    #[test]
    fn a_tracked_list_is_stale_until_synced_and_again_after_the_bound() {
        let local = RevocationList::new(1000, Duration::from_secs(60));
        assert_eq!(local.check_fresh(unix_now_ms()), Ok(()));
        let list = RevocationList::new(1000, Duration::from_secs(60))
            .tracking_freshness(Duration::from_secs(10));
        let now = unix_now_ms();
        assert_eq!(list.check_fresh(now), Err(Stale::NeverSynced));
        list.mark_synced(now);
        assert_eq!(list.check_fresh(now + 10_000), Ok(()));
        assert_eq!(
            list.check_fresh(now + 11_000),
            Err(Stale::For { seconds: 11 })
        );
        list.mark_synced(now - 5_000);
        assert_eq!(
            list.check_fresh(now + 1_000),
            Ok(()),
            "an older sync never moves it back"
        );
    }
}
