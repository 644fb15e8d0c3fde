//! A user's live-session index in Redis: two sorted sets under the user's
//! hash tag, `P{u:..}:live` (sid -> created_at, for newest-first pages) and
//! `P{u:..}:active` (sid -> last_active_at, for the cap's least recently
//! active choice). They hold the unrevoked sessions: revocation takes a
//! session out, cleanup and the cap drop members that have expired.
//!
//! The cap on Redis: `index.lua` (atomic on the user's slot) adds the new
//! session above every other in activity order and names the members beyond
//! the cap; each is revoked through the ordinary revocation path (log, hash,
//! broadcast), which also takes it out of the index. Concurrent logins of one
//! user see each other's entries in one order, so once they have all returned
//! the user has exactly `cap` live sessions (no more, and none ended that a
//! serial run would have kept); while they run, a few more may briefly exist
//! (at most one per login in flight). A member that was already revoked or
//! whose hash is gone does not count: it is dropped and the cap is checked
//! again. A refresh racing the logins can change which session is least
//! recently active midway; the count still converges.

use redis::AsyncCommands;

use super::RedisStore;
use crate::store::{Lifetimes, Position, SessionRecord, SessionStore, StoreError};

/// Rounds of the cap: a second is only needed when a concurrent call or a
/// stale member got in the way, and each round removes at least one member.
const CAP_ROUNDS: usize = 32;

impl RedisStore {
    pub(super) fn live_key(&self, user_id: &str) -> String {
        self.keys.user(user_id, "live")
    }

    pub(super) fn active_key(&self, user_id: &str) -> String {
        self.keys.user(user_id, "active")
    }

    /// Runs index.lua for `s`: adds it to its user's index when `add`, and
    /// names the members beyond `cap` (0: no cap).
    async fn index_script(
        &self,
        s: &SessionRecord,
        add: bool,
        cap: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (live, active) = (self.live_key(&s.user_id), self.active_key(&s.user_id));
        let l = self.retention.lifetimes;
        let script = &self.index;
        self.redis
            .run("index", |mut c| async move {
                script
                    .key(live)
                    .key(active)
                    .arg(&s.id)
                    .arg(if add { "1" } else { "0" })
                    .arg(s.created_at)
                    .arg(s.last_active_at)
                    .arg(s.created_at)
                    .arg(l.idle_ms)
                    .arg(l.absolute_ms)
                    .arg(cap)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }

    /// Puts a new, unrevoked session into its user's index.
    pub(super) async fn index(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.index_script(s, true, 0).await.map(|_| ())
    }

    /// Takes `ids` out of `user_id`'s index (revoked, expired or gone).
    pub(super) async fn forget(&self, user_id: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (live, active) = (self.live_key(user_id), self.active_key(user_id));
        self.redis
            .run("forget", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .zrem(&live, ids)
                    .ignore()
                    .zrem(&active, ids)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Records a refresh's activity for the cap's order where the rotation
    /// script could not (a Cluster). Best effort: the rotation is already
    /// committed, and a stale score only makes this session look older than
    /// it is to the cap.
    pub(super) async fn touch(&self, s: &SessionRecord) {
        let (active, id, at) = (self.active_key(&s.user_id), &s.id, s.last_active_at);
        let r = self
            .redis
            .run("touch", |mut c| async move {
                redis::cmd("ZADD")
                    .arg(&active)
                    .arg("XX")
                    .arg(at)
                    .arg(id)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not record a refresh in the session index");
        }
    }

    /// Indexes the new session `s` and revokes its user's least recently
    /// active sessions beyond `cap` (see the module doc).
    pub(super) async fn index_capped(
        &self,
        s: &SessionRecord,
        cap: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut revoked = Vec::new();
        let mut add = true;
        for _ in 0..CAP_ROUNDS {
            let over = self.index_script(s, add, cap).await?;
            add = false;
            let mut settled = true;
            for id in over {
                if self.revoke(&id, s.created_at).await? {
                    revoked.push(id);
                } else {
                    // Revoked by someone else meanwhile, or gone: not ours to count.
                    self.forget(&s.user_id, std::slice::from_ref(&id)).await?;
                    settled = false;
                }
            }
            if settled {
                break;
            }
        }
        Ok(revoked)
    }

    /// One newest-first page of the user's live sessions after `after`.
    pub(super) async fn page(
        &self,
        user_id: &str,
        now: i64,
        l: Lifetimes,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let live = self.live_key(user_id);
        let max = after.map_or_else(|| "+inf".to_owned(), |p| p.created_at.to_string());
        let batch = limit.saturating_add(1).clamp(16, 256);
        let mut out = Vec::new();
        let mut offset: isize = 0;
        while out.len() < limit {
            let (key, max) = (live.clone(), max.clone());
            let rows: Vec<(String, f64)> = self
                .redis
                .run("list", |mut c| async move {
                    c.zrevrangebyscore_limit_withscores(&key, max, "-inf", offset, batch as isize)
                        .await
                })
                .await?;
            offset += rows.len() as isize;
            let last = rows.len() < batch;
            for (id, created_at) in rows {
                // Same-millisecond sessions at the cursor: only ids below it.
                if after.is_some_and(|p| !p.precedes(created_at as i64, &id)) {
                    continue;
                }
                if let Some(s) = self.get(&id).await? {
                    if s.user_id == user_id && s.revoked_at.is_none() && !l.is_expired(&s, now) {
                        out.push(s);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
            }
            if last {
                break;
            }
        }
        Ok(out)
    }
}
