//! Wires a validated [`Config`] into a running sidecar: the store, the
//! client listener's workers ([`crate::server`]), and on a separate
//! background runtime the admin listener, revocation sync, maintenance and
//! the drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::admin::{Admin, AdminService};
use crate::auth::keys::TokenKey;
use crate::config::{Config, StoreConfig};
use crate::logging::redis_target;
use crate::metrics::Metrics;
use crate::reload::{Built, Fixed, Reloader};
use crate::revocation::sync::RevocationSync;
use crate::revocation::Loader;
use crate::revocation::RevocationList;
use crate::server::Current;
use crate::shutdown::{Drain, InFlight, ShutdownWatch};
use crate::store::feed::RevocationFeed;
use crate::store::redis::{self, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::store::SessionStore;

/// Builds everything and serves until SIGTERM/SIGINT, then drains. Returns
/// when drained (the caller exits the process, which ends the workers' last
/// connections), or at once on a start-up failure.
pub fn run(config: Config, keys: Vec<Arc<TokenKey>>) -> anyhow::Result<()> {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sg-background")
        .enable_all()
        .build()?;
    let started = background.block_on(start(config, keys))?;
    background.block_on(async move {
        crate::shutdown::signalled().await;
        let _ = started.shutdown.send(true);
        let mut drain = started.drain;
        drain.grace = started.reloader.shutdown_grace();
        drain.run().await
    });
    // Background work (a DNS lookup, a store call) is not waited for: the
    // drain is over, and the process exits next.
    background.shutdown_background();
    Ok(())
}

/// A started sidecar: what stopping it needs.
pub struct Started {
    shutdown: tokio::sync::watch::Sender<bool>,
    drain: Drain,
    reloader: Arc<Reloader>,
}

/// A store, and (Redis) its revocation broadcast.
pub type OpenedStore = (Arc<dyn SessionStore>, Option<Arc<dyn RevocationFeed>>);

/// The configured store, and (Redis, when `with_feed`) its revocation broadcast.
pub fn open_store(config: &Config, with_feed: bool) -> anyhow::Result<OpenedStore> {
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => (
            // The message carries the cause: `{e}`, not a context chain that
            // would print the cause twice.
            Arc::new(SqliteStore::open(path).map_err(|e| {
                anyhow::anyhow!("opening the SQLite store at {}: {e}", path.display())
            })?),
            None,
        ),
        StoreConfig::Redis(r) => {
            let store = RedisStore::open(r, redis::retention(config))
                .map_err(|e| anyhow::anyhow!("store.redis: {e}"))?;
            let feed: Option<Arc<dyn RevocationFeed>> = if with_feed {
                let feed = store
                    .feed(r)
                    .map_err(|e| anyhow::anyhow!("store.redis: {e}"))?;
                Some(Arc::new(feed))
            } else {
                None
            };
            tracing::info!(target_nodes = %redis_target(r), prefix = %r.key_prefix, "Redis store");
            (Arc::new(store), feed)
        }
    })
}

/// Builds everything, binds both listeners and starts serving; background
/// work runs on the calling runtime.
pub async fn start(config: Config, keys: Vec<Arc<TokenKey>>) -> anyhow::Result<Started> {
    let metrics = Arc::new(Metrics::with_request_timeout(
        config.upstream.request_timeout,
    ));
    let (store, feed) = open_store(&config, true)?;
    let token_lifetime = config.tokens.access_ttl + config.tokens.leeway;
    let mut revocations = RevocationList::new(config.revocation.cache_entries, token_lifetime);
    if feed.is_some() {
        revocations = revocations.tracking_freshness(config.revocation.max_staleness);
    }
    let fixed = Fixed {
        metrics: metrics.clone(),
        store: store.clone(),
        revocations: Arc::new(revocations),
    };
    let built = Built::new(&config, &keys, &fixed).map_err(anyhow::Error::msg)?;
    let loader = Loader {
        list: fixed.revocations.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    };
    if feed.is_none() {
        // A restart must forget no revocation: load them before serving.
        let loaded = loader
            .load()
            .await
            .map_err(|e| anyhow::anyhow!("loading revocations from the store: {e}"))?;
        tracing::info!(revocations = loaded, "revocation list loaded");
    } else {
        // A shared store may be down at start: the sync service loads the list
        // as soon as Redis answers; until then /readyz says 503 and tokens get 503.
        tracing::info!("revocation list: loading from Redis in the background");
    }

    let listeners =
        crate::server::bind(config.server.listen, config.server.threads).map_err(|e| {
            anyhow::anyhow!(
                "server.listen: cannot listen on {}: {e}",
                config.server.listen
            )
        })?;
    let inflight = Arc::new(InFlight::default());
    let Built {
        live,
        admin,
        services,
    } = built;
    let admin = AdminService::bind(
        Admin::new(
            metrics.clone(),
            store.clone(),
            fixed.revocations.clone(),
            inflight.clone(),
            listeners[0].local_addr()?,
            admin,
        ),
        config.server.admin_listen,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "server.admin_listen: cannot listen on {}: {e}",
            config.server.admin_listen
        )
    })?;
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let current = Arc::new(Current::new(live));
    crate::server::start_workers(current.clone(), inflight.clone(), listeners, watch.clone())
        .context("starting the worker threads")?;

    if let Some(hook) = &services.webhook {
        hook.spawn_workers(watch.clone());
    }
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        services,
        fixed.clone(),
        current,
        admin.admin(),
        watch.clone(),
    ));
    reloader
        .clone()
        .spawn()
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move { admin.run().await });
    tokio::spawn(SessionCleanup(reloader.clone()).run(watch.clone()));
    tokio::spawn(UpstreamRefresh(reloader.clone()).run(watch.clone()));
    let sync = RevocationSync {
        list: fixed.revocations.clone(),
        loader,
        feed,
        resync_every: config.revocation.resync_interval,
        metrics: metrics.clone(),
    };
    let sync_watch = watch.clone();
    tokio::spawn(async move { sync.run(sync_watch).await });
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        upstream = %config.upstream.url,
        workers = config.server.threads,
        "sessiongate started"
    );
    Ok(Started {
        shutdown,
        drain: Drain {
            inflight,
            grace: config.server.shutdown_grace,
            store,
        },
        reloader,
    })
}

/// How often the background services look at the current config again.
const RECHECK: Duration = Duration::from_secs(10);

/// Deletes expired sessions, revoked ones no token can use, and old events
/// every `sessions.cleanup_interval` of the current config; a reloaded
/// interval applies within [`RECHECK`].
struct SessionCleanup(Arc<Reloader>);

impl SessionCleanup {
    async fn run(self, mut shutdown: ShutdownWatch) {
        let mut every = self.0.cleanup_interval();
        let mut cleanup = tokio::time::interval(every);
        let mut recheck = tokio::time::interval(RECHECK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = cleanup.tick() => match self.0.sessions().cleanup().await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions and old events removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session cleanup failed; will retry"),
                },
                _ = recheck.tick() => {
                    if self.0.cleanup_interval() != every {
                        every = self.0.cleanup_interval();
                        cleanup = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    }
                }
            }
        }
    }
}

/// Resolves the current upstream's name again every [`RECHECK`] when it has
/// one (or has no address yet), so a moved upstream is followed.
struct UpstreamRefresh(Arc<Reloader>);

impl UpstreamRefresh {
    async fn run(self, mut shutdown: ShutdownWatch) {
        let mut resolve = tokio::time::interval(RECHECK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = resolve.tick() => {
                    let upstream = self.0.upstream();
                    if upstream.needs_resolving() || upstream.addr().is_none() {
                        // getaddrinfo blocks: keep it off the runtime's workers.
                        match tokio::task::spawn_blocking(move || upstream.resolve()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "cannot resolve the upstream"),
                            Err(e) => tracing::warn!(error = %e, "upstream resolution task failed"),
                        }
                    }
                }
            }
        }
    }
}
