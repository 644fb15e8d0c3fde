//! The Redis store, for several replicas sharing sessions (one server or a
//! Redis Cluster). Keys, all under `key_prefix` (`P`):
//!
//! - `P{<sid>}:s` — the session hash. Its TTL is the time until the session
//!   can no longer be used (`min(created + absolute, last_active + idle)`),
//!   renewed by every rotation; a revoked session keeps its hash until then so
//!   that a refresh still answers `session_revoked`.
//! - `P{u:<hex user id>}:sessions` — the user's session ids (a set, revoked
//!   ones included until cleanup), `P{u:..}:live` + `P{u:..}:active` — the
//!   unrevoked ones for pages and the per-user cap (index.rs), and
//!   `P{u:..}:events` — the security events (sorted by time, then id).
//! - `P{users}` — users with sessions or events, walked by `cleanup`.
//! - `P{rev}` — the revocation log (sorted set: sid -> revoked_at ms) the
//!   replicas resync from, and `P{rev}:ch` — its pub/sub channel.
//! - `P{rl:<route>:<ip>}` — a rate-limit bucket shared by the replicas
//!   (buckets.rs), expiring when it would be full again.
//!
//! What must be atomic touches one key only (rotation, revocation, a
//! rate-limit bucket: Lua scripts on one key), so the same code runs on
//! Redis Cluster, where a user's index and the revocation log live in other
//! slots. On one server a refresh is one round trip: its script also updates
//! the user's activity score (rotate.lua), which on a Cluster is a second,
//! awaited call.

mod buckets;
mod cleanup;
mod conn;
mod events;
pub mod feed;
mod index;
mod layout;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{
    Activity, By, Lifetimes, Position, RefreshOutcome, Scope, SecurityEvent, SessionRecord,
    SessionStore, SharedBuckets, StoreError,
};
use crate::config::RedisConfig;
use conn::Redis;
pub use conn::OP_TIMEOUT;
pub(crate) use layout::Keys;
use layout::{event_member, fields, read_member, record, valid_id, StoredEvent};

/// What the store needs to know besides where Redis is: the TTLs it sets.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub lifetimes: Lifetimes,
    /// How long security events are kept.
    pub events_ms: i64,
    /// How long the revocation log must remember a revocation (access TTL +
    /// leeway, and the last second a token is accepted in).
    pub revocations_ms: i64,
}

pub struct RedisStore {
    redis: Redis,
    keys: Keys,
    retention: Retention,
    rotate: Script,
    revoke: Script,
    event: Script,
    index: Script,
    bucket: Script,
}

impl RedisStore {
    /// Builds the store without connecting: Redis may be down at start; calls
    /// fail with [`StoreError`] until it answers.
    pub fn open(config: &RedisConfig, retention: Retention) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            redis: Redis::open(config, None)?,
            keys: Keys {
                prefix: config.key_prefix.clone(),
            },
            retention,
            rotate: Script::new(include_str!("redis/rotate.lua")),
            revoke: Script::new(include_str!("redis/revoke.lua")),
            event: Script::new(include_str!("redis/event.lua")),
            index: Script::new(include_str!("redis/index.lua")),
            bucket: Script::new(include_str!("redis/bucket.lua")),
        })
    }

    /// The subscriber that carries revocations between replicas.
    pub fn feed(&self, config: &RedisConfig) -> Result<feed::RedisFeed, StoreError> {
        feed::RedisFeed::open(config, self.keys.clone())
    }

    fn is_cluster(&self) -> bool {
        self.redis.is_cluster()
    }

    fn ttl_ms(&self, s: &SessionRecord) -> i64 {
        let l = &self.retention.lifetimes;
        (l.expires_at(s) - s.last_active_at.max(s.created_at)).max(1000)
    }

    /// The session hash (with its TTL) and the user's `sessions` set; the live index is the caller's.
    async fn create_hash(&self, s: &SessionRecord) -> Result<(), StoreError> {
        if !valid_id(&s.id) {
            return Err(StoreError::Invalid(
                "redis: a session id may not contain { or }".into(),
            ));
        }
        let (key, ttl, f) = (self.keys.session(&s.id), self.ttl_ms(s), fields(s));
        let index = self.keys.user(&s.user_id, "sessions");
        let (users, user) = (self.keys.users(), hex::encode(&s.user_id));
        let absolute = self.retention.lifetimes.absolute_ms;
        self.redis
            .run("create", |mut c| async move {
                // The hash and its TTL in one transaction (one slot); the indexes after.
                redis::pipe()
                    .atomic()
                    .hset_multiple(&key, &f)
                    .ignore()
                    .pexpire(&key, ttl)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await?;
                // Sessions end at most `absolute` after creation: so does the index.
                let () = c.sadd(&index, &s.id).await?;
                let _: bool = c.pexpire(&index, absolute).await?;
                c.sadd::<_, _, ()>(&users, &user).await
            })
            .await
    }

    /// Runs revoke.lua: `None` when unknown, else (revoked now, revoked_at, user id).
    async fn revoke_at(
        &self,
        id: &str,
        at: i64,
    ) -> Result<Option<(bool, i64, String)>, StoreError> {
        let key = self.keys.session(id);
        let script = &self.revoke;
        let out: Vec<String> = self
            .redis
            .run("revoke", |mut c| async move {
                script.key(key).arg(at).invoke_async(&mut c).await
            })
            .await?;
        match out.as_slice() {
            [] => Ok(None),
            [flag, when, user] => Ok(Some((
                flag == "1",
                when.parse().unwrap_or(at),
                user.clone(),
            ))),
            _ => Err(StoreError::Invalid(
                "redis: unexpected revoke answer".into(),
            )),
        }
    }

    /// Adds `id` to the revocation log at `at`, unless it is there already
    /// (NX: an earlier revocation keeps its earlier time). Whether it was added.
    async fn log_revocation(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let (log, sid) = (self.keys.revoked(), id.to_owned());
        let added: i64 = self
            .redis
            .run("revoke", |mut c| async move {
                redis::cmd("ZADD")
                    .arg(&log)
                    .arg("NX")
                    .arg(at)
                    .arg(&sid)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(added == 1)
    }

    /// Tells the other replicas at once. Best effort: a lost broadcast is
    /// caught by their next resync of the log.
    async fn broadcast_revocation(&self, id: &str, at: i64) {
        let (channel, message) = (self.keys.channel(), format!("{at}:{id}"));
        let published = self
            .redis
            .run("publish", |mut c| async move {
                c.publish::<_, _, i64>(&channel, &message).await
            })
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, "revocation broadcast failed; replicas catch up at their next resync");
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn create(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.create_hash(s).await?;
        if s.revoked_at.is_none() {
            self.index(s).await?;
        }
        Ok(())
    }

    async fn create_capped(
        &self,
        s: &SessionRecord,
        max_per_user: usize,
        // The store's own `retention.lifetimes` (the same values) decide expiry.
        _lifetimes: Lifetimes,
    ) -> Result<Vec<String>, StoreError> {
        self.create_hash(s).await?;
        self.index_capped(s, max_per_user).await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let key = self.keys.session(id);
        let h: HashMap<String, String> = self
            .redis
            .run("get", |mut c| async move { c.hgetall(&key).await })
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        record(id, h).map(Some)
    }

    async fn refresh(
        &self,
        id: &str,
        presented: u64,
        a: &Activity,
        lifetimes: Lifetimes,
    ) -> Result<RefreshOutcome, StoreError> {
        if !valid_id(id) {
            return Ok(RefreshOutcome::NotFound);
        }
        let key = self.keys.session(id);
        // The caller's lifetimes (they follow a reload) decide expiry; the
        // TTL follows the store's, as at creation.
        let (check, ttl) = (lifetimes, self.retention.lifetimes);
        // On one server the script also updates the user's activity score; on
        // a Cluster that key lives in another slot (see rotate.lua).
        let (head, tail) = match self.is_cluster() {
            true => (String::new(), String::new()),
            false => self.keys.user_around("active"),
        };
        let script = &self.rotate;
        let out: Vec<String> = self
            .redis
            .run("rotate", |mut c| async move {
                script
                    .key(key)
                    .arg(presented)
                    .arg(a.at)
                    .arg(&a.ip)
                    .arg(&a.user_agent)
                    .arg(&a.kid)
                    .arg(check.idle_ms)
                    .arg(check.absolute_ms)
                    .arg(ttl.idle_ms)
                    .arg(ttl.absolute_ms)
                    .arg(id)
                    .arg(head)
                    .arg(tail)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let mut out = out.into_iter();
        let (Some(flag), Some(indexed)) = (out.next(), out.next()) else {
            return Ok(RefreshOutcome::NotFound);
        };
        let mut h = HashMap::with_capacity(12);
        while let (Some(k), Some(v)) = (out.next(), out.next()) {
            h.insert(k, v);
        }
        let before = record(id, h)?;
        if flag != "1" {
            return Ok(RefreshOutcome::Unchanged(before));
        }
        let after = before.rotated(a);
        if indexed != "1" {
            // Awaited: a login after this refresh has answered must see it in
            // the cap's order (the contract suite's cap case).
            self.touch(&after).await;
        }
        Ok(RefreshOutcome::Rotated { before, after })
    }

    async fn revoke(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        if !valid_id(id) {
            return Ok(false);
        }
        // Log first, then the session: should the second step fail, the
        // replicas over-revoke (fail closed) until the caller retries.
        let added = self.log_revocation(id, at).await?;
        let Some((changed, revoked_at, user_id)) = self.revoke_at(id, at).await? else {
            if added {
                let (log, sid) = (self.keys.revoked(), id.to_owned());
                self.redis
                    .run("revoke", |mut c| async move {
                        c.zrem::<_, _, ()>(&log, &sid).await
                    })
                    .await?;
            }
            return Ok(false);
        };
        // Out of the live index: listings and the cap no longer see it.
        self.forget(&user_id, &[id.to_owned()]).await?;
        self.broadcast_revocation(id, revoked_at).await;
        Ok(changed)
    }

    async fn stop_tokens(&self, id: &str, at: i64) -> Result<(), StoreError> {
        if !valid_id(id) {
            return Ok(());
        }
        // A revocation without a session hash to mark: the log entry (every
        // replica's resync finds it) and the broadcast (sooner).
        self.log_revocation(id, at).await?;
        self.broadcast_revocation(id, at).await;
        Ok(())
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        // The live index: revoked sessions (kept in the `sessions` set until
        // cleanup) need no second revocation, so the walk stays short.
        let live = self.live_key(user_id);
        let ids: Vec<String> = self
            .redis
            .run("revoke_user", |mut c| async move {
                c.zrange(&live, 0, -1).await
            })
            .await?;
        // On a cluster the sessions live in other slots: one script per session.
        let (mut revoked, mut stale) = (Vec::new(), Vec::new());
        for id in ids.into_iter().filter(|id| Some(id.as_str()) != except) {
            if self.revoke(&id, at).await? {
                revoked.push(id);
            } else {
                stale.push(id);
            }
        }
        self.forget(user_id, &stale).await?;
        Ok(revoked)
    }

    async fn list_active(
        &self,
        user_id: &str,
        now: i64,
        l: Lifetimes,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.page(user_id, now, l, after, limit).await
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let log = self.keys.revoked();
        let rows: Vec<(String, f64)> = self
            .redis
            .run("revoked_since", |mut c| async move {
                c.zrangebyscore_withscores(&log, since, "+inf").await
            })
            .await?;
        Ok(rows.into_iter().map(|(id, at)| (id, at as i64)).collect())
    }

    async fn record_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        let stored = StoredEvent {
            kind: e.kind.to_owned(),
            session_id: e.session_id.clone(),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            by: e.by.map(|b| b.as_str().to_owned()),
            reason: e.reason.clone(),
            scope: e.scope.map(|s| s.as_str().to_owned()),
        };
        let member = event_member(&e.id, &stored)?;
        let events = self.keys.user(&e.user_id, "events");
        let (users, user) = (self.keys.users(), hex::encode(&e.user_id));
        let (script, retain, at) = (&self.event, self.retention.events_ms.max(1000), e.at);
        self.redis
            .run("event", |mut c| async move {
                let _: i64 = script
                    .key(events)
                    .arg(at)
                    .arg(member)
                    .arg(retain)
                    .invoke_async(&mut c)
                    .await?;
                c.sadd::<_, _, ()>(&users, &user).await
            })
            .await
    }

    async fn events_page(
        &self,
        user_id: &str,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let key = self.keys.user(user_id, "events");
        let max = after.map_or_else(|| "+inf".to_owned(), |p| p.created_at.to_string());
        let batch = limit.saturating_add(1).clamp(16, 256);
        let (mut out, mut offset) = (Vec::new(), 0isize);
        while out.len() < limit {
            let (key, max) = (key.clone(), max.clone());
            let rows: Vec<(String, f64)> = self
                .redis
                .run("events", |mut c| async move {
                    c.zrevrangebyscore_limit_withscores(&key, max, "-inf", offset, batch as isize)
                        .await
                })
                .await?;
            offset += rows.len() as isize;
            let last = rows.len() < batch;
            for (member, at) in &rows {
                let Some((id, e)) = read_member(member) else {
                    continue;
                };
                let at = *at as i64;
                // Same-millisecond events at the cursor: only ids below it.
                if after.is_some_and(|p| !p.precedes(at, id)) {
                    continue;
                }
                out.push(SecurityEvent {
                    id: id.to_owned(),
                    kind: crate::names::event::kind_of(&e.kind),
                    user_id: user_id.to_owned(),
                    session_id: e.session_id,
                    ip: e.ip,
                    user_agent: e.user_agent,
                    at,
                    by: e.by.as_deref().and_then(By::parse),
                    reason: e.reason,
                    scope: e.scope.as_deref().and_then(Scope::parse),
                });
                if out.len() == limit {
                    break;
                }
            }
            if last {
                break;
            }
        }
        Ok(out)
    }

    async fn all_events_page(
        &self,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        self.merged_events_page(after, limit).await
    }

    async fn cleanup(
        &self,
        now: i64,
        l: Lifetimes,
        revoked_before: i64,
        events_before: i64,
    ) -> Result<u64, StoreError> {
        // TTLs remove most things on their own; this catches what the caller's
        // clock says is over, trims the logs, and forgets users with nothing left.
        let log = self.keys.revoked();
        let horizon = now - self.retention.revocations_ms;
        self.redis
            .run("cleanup", |mut c| async move {
                c.zrembyscore::<_, _, _, i64>(&log, "-inf", format!("({horizon}"))
                    .await
            })
            .await?;
        let users_key = self.keys.users();
        let mut cursor = 0u64;
        let mut removed = 0u64;
        loop {
            let key = users_key.clone();
            let (next, batch): (u64, Vec<String>) = self
                .redis
                .run("cleanup", |mut c| async move {
                    redis::cmd("SSCAN")
                        .arg(&key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(200)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for user in batch {
                removed += self
                    .cleanup_user(&user, now, l, revoked_before, events_before)
                    .await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis
            .run("ping", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await
            .map(|_| ())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write was acknowledged by Redis; durability is its configuration's job.
        Ok(())
    }

    fn shared_buckets(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn SharedBuckets>> {
        Some(self)
    }
}

/// Retention for a config: the session lifetimes, events, revocation horizon.
pub fn retention(config: &crate::config::Config) -> Retention {
    let ms = |d: Duration| d.as_millis() as i64;
    Retention {
        lifetimes: Lifetimes {
            idle_ms: ms(config.sessions.idle_timeout),
            absolute_ms: ms(config.sessions.absolute_lifetime),
        },
        events_ms: ms(config.security_events.retain),
        // One second more than the tokens live: a token is accepted through
        // the whole second `exp + leeway` (see `RevocationList`).
        revocations_ms: ms(config.tokens.access_ttl + config.tokens.leeway) + 1000,
    }
}
