//! The in-memory revocation list (SPEC 5): checked on every proxied request
//! without a store round trip. An entry lives until the last access token it
//! could match has expired, so the list stays bounded by recent revocations.

use std::time::Duration;

use moka::sync::Cache;

use crate::time::unix_now;

pub struct RevocationList {
    /// session id -> unix time after which no access token of it can be valid.
    sessions: Cache<Box<str>, i64>,
    /// How long after a revocation an access token of the session may still be presented.
    token_lifetime: i64,
}

struct UntilHarmless;

impl moka::Expiry<Box<str>, i64> for UntilHarmless {
    fn expire_after_create(
        &self,
        _k: &Box<str>,
        until: &i64,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs((*until - unix_now()).max(0) as u64))
    }

    fn expire_after_update(
        &self,
        k: &Box<str>,
        until: &i64,
        at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, until, at)
    }
}

impl RevocationList {
    /// `token_lifetime`: access TTL plus leeway.
    pub fn new(capacity: u64, token_lifetime: Duration) -> Self {
        RevocationList {
            // LRU rather than TinyLFU: a new revocation must always be admitted.
            sessions: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(UntilHarmless)
                .build(),
            token_lifetime: token_lifetime.as_secs() as i64,
        }
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Records that `session_id` was revoked at unix time `revoked_at`.
    /// Returns false when no token of it can still be valid (nothing to remember).
    pub fn insert(&self, session_id: &str, revoked_at: i64) -> bool {
        let until = revoked_at + self.token_lifetime;
        if until <= unix_now() {
            return false;
        }
        self.sessions.insert(session_id.into(), until);
        true
    }

    /// The horizon for loading revocations from the store: older ones are harmless.
    pub fn horizon(&self) -> i64 {
        unix_now() - self.token_lifetime
    }

    pub fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
