//! A shared store's broadcast of revocations between replicas (Redis
//! pub/sub): what the store delivers, for the revocation sync to follow.

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedReceiver;

use super::StoreError;

/// What the broadcast connection delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// (session id, revoked_at unix ms) from any replica.
    Revoked(String, i64),
    /// The connection dropped: broadcasts may have been lost.
    Gap,
}

/// A store's broadcast of revocations between replicas.
#[async_trait]
pub trait RevocationFeed: Send + Sync {
    /// Subscribes if needed, then makes one round trip on the subscribed
    /// connection: on `Ok`, every broadcast sent before the call has been
    /// delivered to the event receiver.
    async fn probe(&self) -> Result<(), StoreError>;

    /// The events; the sync task takes them once.
    fn take_events(&self) -> Option<UnboundedReceiver<FeedEvent>>;
}
