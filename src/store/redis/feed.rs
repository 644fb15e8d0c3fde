//! The pub/sub side of the revocation list: one RESP3 connection subscribed
//! to `P{rev}:ch` (resubscribed by the client after every reconnection), whose
//! messages and disconnections become [`FeedEvent`]s for the sync task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redis::{PushKind, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::conn::Redis;
use super::Keys;
use crate::config::RedisConfig;
use crate::store::feed::{FeedEvent, RevocationFeed};
use crate::store::StoreError;

pub struct RedisFeed {
    redis: Redis,
    channel: String,
    /// The connection epoch subscribed on (`u64::MAX`: none yet).
    subscribed: AtomicU64,
    events: Mutex<Option<UnboundedReceiver<FeedEvent>>>,
}

/// `<revoked_at ms>:<session id>`, as `RedisStore::revoke` publishes it.
fn parse(payload: &Value) -> Option<FeedEvent> {
    let text = match payload {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    let (at, id) = text.split_once(':')?;
    Some(FeedEvent::Revoked(id.to_owned(), at.parse().ok()?))
}

impl RedisFeed {
    pub(super) fn open(config: &RedisConfig, keys: Keys) -> Result<RedisFeed, StoreError> {
        let (tx, rx) = unbounded_channel();
        let push = Arc::new(move |p: redis::PushInfo| {
            let event = match p.kind {
                PushKind::Message => p.data.get(1).and_then(parse),
                PushKind::Disconnection => Some(FeedEvent::Gap),
                _ => None,
            };
            if let Some(e) = event {
                let _ = tx.send(e);
            }
        });
        Ok(RedisFeed {
            redis: Redis::open(config, Some(push))?,
            channel: keys.channel(),
            subscribed: AtomicU64::new(u64::MAX),
            events: Mutex::new(Some(rx)),
        })
    }
}

#[async_trait]
impl RevocationFeed for RedisFeed {
    async fn probe(&self) -> Result<(), StoreError> {
        let (channel, subscribed) = (&self.channel, &self.subscribed);
        self.redis
            .run_at("subscribe", |mut c, epoch| async move {
                // A server or Cluster connection resubscribes by itself after a
                // reconnection; a new Sentinel master is a new epoch.
                if subscribed.load(Ordering::Acquire) != epoch {
                    c.subscribe(channel).await?;
                    subscribed.store(epoch, Ordering::Release);
                }
                redis::cmd("PING").query_async::<Value>(&mut c).await
            })
            .await?;
        Ok(())
    }

    fn take_events(&self) -> Option<UnboundedReceiver<FeedEvent>> {
        self.events.lock().ok()?.take()
    }
}
