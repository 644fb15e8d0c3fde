//! Wires a validated [`Config`] into a running pingora server: the proxy and
//! admin listeners, the store, and the background tasks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use secrecy::ExposeSecret;

use crate::admin::{Admin, AdminService};
use crate::auth::Authenticator;
use crate::cli::redact_url;
use crate::config::{Config, Store};
use crate::metrics::Metrics;
use crate::proxy::api::AuthApi;
use crate::proxy::gateway::Gateway;
use crate::proxy::login::LoginForwarder;
use crate::proxy::upstream::Upstream;
use crate::revocation::sync::{RevocationFeed, RevocationSync};
use crate::revocation::RevocationList;
use crate::sessions::Sessions;
use crate::shutdown::{Drain, InFlight, Signals};
use crate::store::redis::{self, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::store::SessionStore;

/// Builds everything and serves until SIGTERM/SIGINT. Returns only on a start-up failure.
pub fn run(config: Config) -> anyhow::Result<()> {
    let server = build(config)?;
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    Ok(())
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

pub fn build(config: Config) -> anyhow::Result<Server> {
    let metrics = Arc::new(Metrics::new());
    let (store, feed) = open_store(&config, true)?;
    let token_lifetime = config.tokens.access_ttl + config.tokens.leeway;
    let mut revocations = RevocationList::new(config.revocation.cache_entries, token_lifetime);
    if feed.is_some() {
        revocations = revocations.tracking_freshness(config.revocation.max_staleness);
    }
    let revocations = Arc::new(revocations);
    let sessions = Arc::new(Sessions::new(
        &config,
        store.clone(),
        revocations.clone(),
        metrics.clone(),
    ));

    if feed.is_none() {
        // A restart must forget no revocation: load them before serving.
        let loaded = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(sessions.load_revocations())
            .map_err(|e| anyhow::anyhow!("loading revocations from the store: {e}"))?;
        tracing::info!(revocations = loaded, "revocation list loaded");
    } else {
        // A shared store may be down at start: the sync service loads the list
        // as soon as Redis answers; until then /readyz says 503 and tokens get 503.
        tracing::info!("revocation list: loading from Redis in the background");
    }

    let upstream = Upstream::new(&config.upstream).map_err(anyhow::Error::msg)?;
    let login = config
        .login
        .clone()
        .map(|l| LoginForwarder::new(l, upstream.clone()));
    let inflight = Arc::new(InFlight::default());
    let auth = Arc::new(Authenticator::new(
        &config.tokens,
        revocations.clone(),
        metrics.clone(),
    ));
    let api = AuthApi::new(&config, sessions.clone(), login);
    let gateway = Gateway::new(
        &config,
        auth,
        api,
        upstream.clone(),
        metrics.clone(),
        inflight.clone(),
    );

    let grace = config.server.shutdown_grace;
    let conf = ServerConf {
        threads: config.server.threads,
        // Our Drain service exits as soon as requests are done; pingora's
        // own timer only has to outlast it.
        grace_period_seconds: Some(grace.as_secs() + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        // One current-thread runtime per worker: no work-stealing bookkeeping
        // or cross-thread wake-ups on the request path.
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // pingora retries a busy port forever (and panics on an address that is
    // not on this host, leaving the process up): find out here instead, so a
    // listener that cannot be had is exit 1 with the key that names it.
    ensure_bindable("server.listen", config.server.listen)?;
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "proxy");
    let listen = config.server.listen.to_string();
    match &config.server.tls {
        Some(tls) => proxy
            .add_tls(
                &listen,
                &tls.cert_file.to_string_lossy(),
                &tls.key_file.to_string_lossy(),
            )
            .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?,
        None => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);

    let admin = AdminService::bind(
        Admin {
            metrics: metrics.clone(),
            store: store.clone(),
            revocations: revocations.clone(),
            inflight: inflight.clone(),
            listen: config.server.listen,
            listening: Default::default(),
            operator: config
                .admin
                .token
                .as_ref()
                .map(|t| crate::admin::operator::Operator::new(t, sessions.clone())),
        },
        config.server.admin_listen,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "server.admin_listen: cannot listen on {}: {e}",
            config.server.admin_listen
        )
    })?;
    server.add_service(background_service("admin", admin));

    server.add_service(background_service(
        "maintenance",
        Maintenance {
            sessions: sessions.clone(),
            upstream,
            cleanup_every: config.sessions.cleanup_interval,
        },
    ));
    server.add_service(background_service(
        "revocation sync",
        RevocationSync {
            list: revocations.clone(),
            sessions: sessions.clone(),
            feed,
            resync_every: config.revocation.resync_interval,
            metrics: metrics.clone(),
        },
    ));
    server.add_service(background_service(
        "drain",
        Drain {
            inflight,
            grace,
            store: store.clone(),
        },
    ));
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        upstream = %config.upstream.url,
        "sessiongate starting"
    );
    Ok(server)
}

/// Binds `addr` once and lets it go (std sets SO_REUSEADDR, as pingora does).
fn ensure_bindable(key: &str, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{key}: cannot listen on {addr}: {e}"))
}

/// Periodic work: session cleanup and upstream DNS refresh.
struct Maintenance {
    sessions: Arc<Sessions>,
    upstream: Arc<Upstream>,
    cleanup_every: Duration,
}

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
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
                    if self.upstream.needs_resolving() || self.upstream.peer().is_none() {
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
