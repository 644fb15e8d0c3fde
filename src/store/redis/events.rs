//! The operator's listing of every user's events (SPEC 9) in Redis.
//!
//! Events live in one sorted set per user (their hash tag keeps a user's
//! keys on one Cluster slot), so a listing across users merges the next page
//! of each user named in `P{users}`: one round trip per user with events.
//! That is fine for an operator's query; with many users, filter by
//! `user_id`, which reads one set.

use redis::AsyncCommands;

use super::RedisStore;
use crate::store::{Position, SecurityEvent, SessionStore, StoreError};

impl RedisStore {
    pub(super) async fn merged_events_page(
        &self,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let users_key = self.keys.users();
        let users: Vec<String> = self
            .redis
            .run(
                "events_all",
                |mut c| async move { c.smembers(&users_key).await },
            )
            .await?;
        let mut merged = Vec::new();
        for hex_user in users {
            // A member that is not one of ours is skipped, never an error.
            let Some(user) = hex::decode(&hex_user)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                continue;
            };
            merged.extend(self.events_page(&user, after, limit).await?);
        }
        // Newest first, as every listing: time, then id, descending.
        merged.sort_unstable_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        merged.truncate(limit);
        Ok(merged)
    }
}
