//! The cleanup task's walk over one user in Redis: TTLs remove most things on
//! their own; this deletes what the caller's clock says is over and keeps the
//! user's indexes and the `P{users}` set in step.

use redis::AsyncCommands;

use super::RedisStore;
use crate::store::{Lifetimes, SessionStore, StoreError};

impl RedisStore {
    /// One user of `cleanup`; `hex_user` is the member of `P{users}`.
    pub(super) async fn cleanup_user(
        &self,
        hex_user: &str,
        now: i64,
        l: Lifetimes,
        revoked_before: i64,
        events_before: i64,
    ) -> Result<u64, StoreError> {
        let user = hex::decode(hex_user)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (index, events) = (
            self.keys.user(&user, "sessions"),
            self.keys.user(&user, "events"),
        );
        let idx = index.clone();
        let ids: Vec<String> = self
            .redis
            .run("cleanup", |mut c| async move { c.smembers(&idx).await })
            .await?;
        let mut removed = 0;
        for id in ids {
            let gone = match self.get(&id).await? {
                None => true,
                Some(s) => {
                    let over = match s.revoked_at {
                        Some(at) => at < revoked_before,
                        None => l.is_expired(&s, now),
                    };
                    if over {
                        let key = self.keys.session(&id);
                        let n: i64 = self
                            .redis
                            .run("cleanup", |mut c| async move { c.del(&key).await })
                            .await?;
                        removed += n as u64;
                    }
                    over
                }
            };
            if gone {
                let (idx, member) = (index.clone(), id.clone());
                self.redis
                    .run("cleanup", |mut c| async move {
                        c.srem::<_, _, ()>(&idx, &member).await
                    })
                    .await?;
                self.forget(&user, &[id]).await?;
            }
        }
        let (users, hex_user) = (self.keys.users(), hex_user.to_owned());
        let n: u64 = self
            .redis
            .run("cleanup", |mut c| async move {
                let n: u64 = c
                    .zrembyscore(&events, "-inf", format!("({events_before}"))
                    .await?;
                let left: u64 = c.scard(&index).await?;
                let left_events: u64 = c.zcard(&events).await?;
                if left == 0 && left_events == 0 {
                    let () = c.srem(&users, &hex_user).await?;
                }
                Ok(n)
            })
            .await?;
        Ok(removed + n)
    }
}
