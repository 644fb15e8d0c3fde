//! The master a set of Sentinels names (`store.redis.sentinel`), found again
//! after a failover.
//!
//! The current master's address is asked of the sentinels (and confirmed with
//! `ROLE` on the master) on first use. A connection failure or a READONLY
//! answer (the old master, back as a replica) makes the next call ask again;
//! until the sentinels name a new master, calls fail with 503
//! `store_unavailable`, never a write to the wrong server. Each new master is
//! a new *epoch*: workers drop their connections of the old one, and the
//! revocation feed subscribes again and resyncs (it may have missed messages).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, ProtocolVersion, TlsCertificates, TlsMode};
use secrecy::{ExposeSecret, SecretString};

use super::{err, lazy_manager, manager_config, PushSender};
use crate::config::RedisConfig;
use crate::store::StoreError;

/// After a failed lookup, calls fail at once for this long instead of asking
/// the sentinels again (a failover takes seconds; callers are many).
const LOOKUP_BACKOFF: Duration = Duration::from_millis(200);

pub(super) struct Sentinel {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    config: ConnectionManagerConfig,
    push: Option<PushSender>,
    master: ArcSwapOption<Master>,
    epoch: AtomicU64,
    failed_lookup: Mutex<Option<Instant>>,
}

struct Master {
    epoch: u64,
    client: redis::Client,
    shared: ConnectionManager,
}

impl Sentinel {
    pub(super) fn open(
        config: &RedisConfig,
        master_name: &str,
        urls: &[SecretString],
        certs: Option<TlsCertificates>,
        push: Option<PushSender>,
    ) -> Result<Sentinel, StoreError> {
        let invalid =
            || StoreError::Invalid("store.redis.sentinel.urls: not a valid Redis URL".into());
        let infos = urls
            .iter()
            .map(|u| {
                u.expose_secret()
                    .into_connection_info()
                    .map_err(|_| invalid())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = infos.first().ok_or_else(invalid)?.redis_settings().clone();
        let mut b = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            master_name,
            SentinelServerType::Master,
        )
        .map_err(err)?;
        // A password in the sentinel URLs is the sentinels' (SPEC 2).
        if let Some(user) = first.username() {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(pw) = first.password() {
            b = b.set_client_to_sentinel_password(pw);
        }
        if let Some(pw) = &config.password {
            b = b.set_client_to_redis_password(pw.expose_secret());
        }
        // RESP3 as for one server (conn.rs `connection_info`).
        b = b.set_client_to_redis_protocol(ProtocolVersion::RESP3);
        if let Some(c) = certs {
            // rediss:// sentinels: the master is reached with TLS too, same trust.
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(c.clone())
                .set_client_to_sentinel_certificates(c);
        }
        Ok(Sentinel {
            sentinels: tokio::sync::Mutex::new(b.build().map_err(err)?),
            config: manager_config(push.clone()),
            push,
            master: ArcSwapOption::empty(),
            epoch: AtomicU64::new(0),
            failed_lookup: Mutex::new(None),
        })
    }

    /// The epoch of the master in use (0: none found yet).
    pub(super) fn epoch(&self) -> u64 {
        self.master.load().as_ref().map_or(0, |m| m.epoch)
    }

    /// A connection to the current master, the worker's own when `local`.
    pub(super) async fn master(&self, local: bool) -> Result<(ConnectionManager, u64), StoreError> {
        let master = match self.master.load_full() {
            Some(m) => m,
            None => self.lookup().await?,
        };
        let manager = match local {
            true => lazy_manager(&master.client, &self.config)?,
            false => master.shared.clone(),
        };
        Ok((manager, master.epoch))
    }

    async fn lookup(&self) -> Result<std::sync::Arc<Master>, StoreError> {
        let mut sentinels = self.sentinels.lock().await;
        // Another caller may have found it while this one waited.
        if let Some(m) = self.master.load_full() {
            return Ok(m);
        }
        let recent_failure = self
            .failed_lookup
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|at| at.elapsed() < LOOKUP_BACKOFF);
        if recent_failure {
            return Err(StoreError::Invalid(
                "redis: the sentinels named no reachable master a moment ago".into(),
            ));
        }
        let found = sentinels.async_get_client().await;
        let client = match found {
            Ok(c) => c,
            Err(e) => {
                if let Ok(mut f) = self.failed_lookup.lock() {
                    *f = Some(Instant::now());
                }
                return Err(err(e));
            }
        };
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let master = std::sync::Arc::new(Master {
            epoch,
            shared: lazy_manager(&client, &self.config)?,
            client,
        });
        self.master.store(Some(master.clone()));
        tracing::info!(epoch, "Redis master found through the sentinels");
        Ok(master)
    }

    /// The connection of `epoch` failed: look the master up again.
    pub(super) fn forget(&self, epoch: u64) {
        let current = self.master.load_full();
        if current.as_ref().is_some_and(|m| m.epoch == epoch) {
            // Only that epoch's master: a newer one found meanwhile stays.
            self.master.compare_and_swap(&current, None);
            tracing::warn!(
                epoch,
                "Redis master connection failed; asking the sentinels again"
            );
            // What the subscriber may have missed is read back by a resync.
            if let Some(push) = &self.push {
                push(redis::PushInfo {
                    kind: redis::PushKind::Disconnection,
                    data: Vec::new(),
                });
            }
        }
    }
}
