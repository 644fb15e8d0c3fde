//! Keeps the in-memory revocation list in step with a shared store (SPEC 5):
//! broadcasts apply within milliseconds; a probe on the broadcast connection
//! every [`PROBE_EVERY`] proves nothing was missed (or, after a gap such as a
//! reconnection, triggers a full resync from the store's revocation log); a
//! periodic full resync covers anything else. A local store (SQLite) has no
//! feed: this process's writes go through this list, and once a second the
//! store's recent revocations are read, so another process on the same file
//! (`sessiongate sessions revoke`) is obeyed within about a second.

use std::sync::Arc;
use std::time::Duration;

use super::{Loader, RevocationList};
use crate::metrics::Metrics;
use crate::shutdown::ShutdownWatch;
use crate::store::feed::{FeedEvent, RevocationFeed};
use crate::time::unix_now_ms;

/// How often the broadcast connection is checked; staleness stays below this while all is well.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How often a local store's recent revocations are read (SPEC 1: within 1 s).
const LOCAL_POLL_EVERY: Duration = Duration::from_millis(500);
/// How far each read reaches back before the previous one started.
const LOCAL_OVERLAP_MS: i64 = 5_000;

pub struct RevocationSync {
    pub list: Arc<RevocationList>,
    pub loader: Loader,
    pub feed: Option<Arc<dyn RevocationFeed>>,
    pub resync_every: Duration,
    pub metrics: Arc<Metrics>,
}

impl RevocationSync {
    fn apply(&self, event: FeedEvent, gap: &mut bool) {
        match event {
            FeedEvent::Revoked(id, at) => {
                self.list.insert(&id, at / 1000);
            }
            FeedEvent::Gap => *gap = true,
        }
    }

    /// Full reload from the store; on success the list is in sync as of `started`.
    async fn resync(&self, started: i64) -> bool {
        match self.loader.load().await {
            Ok(n) => {
                tracing::debug!(loaded = n, "revocation list resynced");
                self.list.mark_synced(started);
                true
            }
            Err(_) => false,
        }
    }

    fn gauges(&self) {
        self.metrics.revocation_entries.set(self.list.len() as i64);
        self.metrics
            .revocation_staleness
            .set(self.list.staleness_seconds());
    }

    async fn follow(&self, feed: &dyn RevocationFeed, mut shutdown: ShutdownWatch) {
        let Some(mut events) = feed.take_events() else {
            tracing::error!("the revocation feed was already taken; broadcasts are not followed");
            return;
        };
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(self.resync_every);
        resync.tick().await;
        // Nothing is known at start: the first good probe resyncs.
        let mut gap = true;
        let mut connected = true;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(event) = events.recv() => self.apply(event, &mut gap),
                _ = probe.tick() => {
                    let started = unix_now_ms();
                    match feed.probe().await {
                        Ok(()) => {
                            if !connected {
                                tracing::info!("revocation broadcast connection is back; resyncing");
                                connected = true;
                            }
                            // Everything sent before the probe is queued: apply it first.
                            while let Ok(event) = events.try_recv() {
                                self.apply(event, &mut gap);
                            }
                            if !gap {
                                self.list.mark_synced(started);
                            } else if self.resync(started).await {
                                gap = false;
                            }
                        }
                        Err(e) => {
                            if connected {
                                tracing::warn!(error = %e, "revocation broadcast connection lost; serving from the in-memory list while it is fresh enough");
                                connected = false;
                            }
                            gap = true;
                        }
                    }
                    self.gauges();
                }
                _ = resync.tick() => {
                    let started = unix_now_ms();
                    if self.loader.load().await.is_ok() && !gap {
                        self.list.mark_synced(started);
                    }
                }
            }
        }
    }
}

impl RevocationSync {
    /// Keeps the list in step with the store until shutdown.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        match &self.feed {
            Some(feed) => self.follow(feed.as_ref(), shutdown).await,
            None => {
                let mut tick = tokio::time::interval(LOCAL_POLL_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut since = unix_now_ms();
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tick.tick() => {
                            let started = unix_now_ms();
                            // A revocation committed late with an earlier
                            // time is still seen: the windows overlap.
                            if self.loader.load_since(since - LOCAL_OVERLAP_MS).await.is_ok() {
                                since = started;
                            }
                            self.gauges();
                        }
                    }
                }
            }
        }
    }
}
