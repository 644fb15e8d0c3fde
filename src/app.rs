//! Wires a validated [`Config`] into a running sidecar: the store, the
//! client listener's workers ([`crate::server`]), and on a separate
//! background runtime the admin listener, revocation sync, maintenance and
//! the drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::admin::{Admin, AdminService};
use crate::auth::Authenticator;
use crate::cli::redact_url;
use crate::config::{Config, Store};
use crate::events::webhook::Webhook;
use crate::metrics::Metrics;
use crate::proxy::api::AuthApi;
use crate::proxy::gateway::Gateway;
use crate::proxy::login::LoginForwarder;
use crate::proxy::rewrite::Rewrite;
use crate::proxy::upstream::Upstream;
use crate::revocation::sync::{RevocationFeed, RevocationSync};
use crate::revocation::RevocationList;
use crate::server::Shared;
use crate::sessions::Sessions;
use crate::shutdown::{Drain, InFlight, ShutdownWatch};
use crate::store::redis::{self, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::store::SessionStore;

/// Builds everything and serves until SIGTERM/SIGINT, then drains and exits
/// the process. Returns only on a start-up failure.
pub fn run(config: Config) -> anyhow::Result<()> {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sg-background")
        .enable_all()
        .build()?;
    let started = background.block_on(start(config))?;
    background.block_on(async move {
        crate::shutdown::signalled().await;
        let _ = started.shutdown.send(true);
        started.drain.run().await
    })
}

/// A started sidecar: what stopping it needs.
pub struct Started {
    shutdown: tokio::sync::watch::Sender<bool>,
    drain: Drain,
}

/// A store, and (Redis) its revocation broadcast.
pub type OpenedStore = (Arc<dyn SessionStore>, Option<Arc<dyn RevocationFeed>>);

/// The configured store, and (Redis, when `with_feed`) its revocation broadcast.
pub fn open_store(config: &Config, with_feed: bool) -> anyhow::Result<OpenedStore> {
    Ok(match &config.store {
        Store::Sqlite { path } => (
            Arc::new(
                SqliteStore::open(path)
                    .with_context(|| format!("opening the SQLite store at {}", path.display()))?,
            ),
            None,
        ),
        Store::Redis(r) => {
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
            let urls: Vec<String> = r
                .urls
                .iter()
                .map(|u| redact_url(u.expose_secret()))
                .collect();
            tracing::info!(urls = %urls.join(", "), prefix = %r.key_prefix, "Redis store");
            (Arc::new(store), feed)
        }
    })
}

/// Builds everything, binds both listeners and starts serving; background
/// work runs on the calling runtime.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    let metrics = Arc::new(Metrics::with_request_timeout(
        config.upstream.request_timeout,
    ));
    let (store, feed) = open_store(&config, true)?;
    let token_lifetime = config.tokens.access_ttl + config.tokens.leeway;
    let mut revocations = RevocationList::new(config.revocation.cache_entries, token_lifetime);
    if feed.is_some() {
        revocations = revocations.tracking_freshness(config.revocation.max_staleness);
    }
    let revocations = Arc::new(revocations);
    let webhook = match &config.security_events.webhook {
        Some(w) => Some(
            Webhook::new(w, metrics.clone())
                .map_err(|e| anyhow::anyhow!("security_events.webhook.{e}"))?,
        ),
        None => None,
    };
    let sessions = Arc::new(
        Sessions::new(&config, store.clone(), revocations.clone(), metrics.clone())
            .with_webhook(webhook.clone()),
    );

    if feed.is_none() {
        // A restart must forget no revocation: load them before serving.
        let loaded = sessions
            .load_revocations()
            .await
            .map_err(|e| anyhow::anyhow!("loading revocations from the store: {e}"))?;
        tracing::info!(revocations = loaded, "revocation list loaded");
    } else {
        // A shared store may be down at start: the sync service loads the list
        // as soon as Redis answers; until then /readyz says 503 and tokens get 503.
        tracing::info!("revocation list: loading from Redis in the background");
    }

    let upstream = Upstream::new(&config.upstream).map_err(anyhow::Error::msg)?;
    let inflight = Arc::new(InFlight::default());
    let auth = Arc::new(Authenticator::new(
        &config.tokens,
        revocations.clone(),
        metrics.clone(),
    ));
    let rewrite = Arc::new(Rewrite {
        identity: config.identity_headers.clone(),
        tls: config.server.tls.is_some(),
        refresh_cookie: config
            .sessions
            .refresh_cookie
            .as_ref()
            .map(|c| c.name.clone()),
    });
    let login = config
        .login
        .clone()
        .map(|l| LoginForwarder::new(l, config.upstream.revoke_header.clone()));
    let api = AuthApi::new(
        &config,
        sessions.clone(),
        auth.clone(),
        rewrite.clone(),
        login,
    );
    let gateway = Arc::new(Gateway::new(&config, auth, api, rewrite, metrics.clone()));
    let tls = match &config.server.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            crate::tls::server_config(&t.cert_file, &t.key_file, config.server.http2)
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?,
        ))),
        None => None,
    };

    let listeners =
        crate::server::bind(config.server.listen, config.server.threads).map_err(|e| {
            anyhow::anyhow!(
                "server.listen: cannot listen on {}: {e}",
                config.server.listen
            )
        })?;
    let admin = AdminService::bind(
        Admin {
            metrics: metrics.clone(),
            store: store.clone(),
            revocations: revocations.clone(),
            inflight: inflight.clone(),
            listen: listeners[0].local_addr()?,
            listening: Default::default(),
            operator: config
                .admin
                .token
                .as_ref()
                .map(|t| crate::admin::operator::Operator::new(t, sessions.clone())),
        },
        config.server.admin_listen,
        config.server.header_read_timeout,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "server.admin_listen: cannot listen on {}: {e}",
            config.server.admin_listen
        )
    })?;
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        gateway,
        upstream: upstream.clone(),
        tls,
        http2: config.server.http2,
        header_read_timeout: config.server.header_read_timeout,
        max_headers: config.server.max_headers,
        max_header_bytes: config.server.max_header_bytes,
        inflight: inflight.clone(),
    });
    crate::server::start_workers(shared, listeners, watch.clone())
        .context("starting the worker threads")?;

    tokio::spawn(async move { admin.run().await });
    let maintenance = Maintenance {
        sessions: sessions.clone(),
        upstream,
        cleanup_every: config.sessions.cleanup_interval,
    };
    tokio::spawn(maintenance.run(watch.clone()));
    if let Some(hook) = &webhook {
        hook.spawn_workers(watch.clone());
    }
    let sync = RevocationSync {
        list: revocations.clone(),
        sessions: sessions.clone(),
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
    })
}

/// Periodic work: session cleanup and upstream DNS refresh.
struct Maintenance {
    sessions: Arc<Sessions>,
    upstream: Arc<Upstream>,
    cleanup_every: Duration,
}

impl Maintenance {
    async fn run(self, mut shutdown: ShutdownWatch) {
        let mut cleanup = tokio::time::interval(self.cleanup_every);
        let mut resolve = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = cleanup.tick() => match self.sessions.cleanup().await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions and old events removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session cleanup failed; will retry"),
                },
                _ = resolve.tick() => {
                    if self.upstream.needs_resolving() || self.upstream.addr().is_none() {
                        // getaddrinfo blocks: keep it off the runtime's workers.
                        let upstream = self.upstream.clone();
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
