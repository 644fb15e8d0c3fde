//! Rate-limit buckets shared by every replica: one Lua script call (bucket.lua)
//! per check on one key, `P{rl:<route>:<ip>}`.

use std::net::IpAddr;

use async_trait::async_trait;

use super::RedisStore;
use crate::config::RateLimitConfig;
use crate::store::{SharedBuckets, StoreError};

#[async_trait]
impl SharedBuckets for RedisStore {
    async fn take(
        &self,
        route: &'static str,
        ip: IpAddr,
        limit: RateLimitConfig,
    ) -> Result<Result<(), u64>, StoreError> {
        let key = self.keys.bucket(route, ip);
        let script = &self.bucket;
        let (go, wait): (i64, u64) = self
            .redis
            .run("rate_limit", |mut c| async move {
                script
                    .key(key)
                    .arg(limit.per_minute)
                    .arg(limit.burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(if go == 1 { Ok(()) } else { Err(wait.max(1)) })
    }
}
