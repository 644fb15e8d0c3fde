//! Connections to Redis (one server, a Cluster, or the master a set of
//! Sentinels names) behind one handle type, with every wait bounded: a dead
//! Redis costs a call at most [`OP_TIMEOUT`], never a pile-up of callers.
//!
//! - **Per worker.** A call made on a current-thread runtime (a proxy worker,
//!   SPEC's `server.threads`) uses a connection of that worker's own, made on
//!   first use: its socket is driven by the thread that waits for the answer,
//!   so a command costs no hop to another thread and no lock shared with the
//!   other workers. Other callers (the background runtime, the CLI) share one.
//! - **Reconnecting, never resending.** A connection that fails is rebuilt for
//!   the next call, but a command whose answer was lost is not sent again: its
//!   outcome is unknown (a rotation may have happened), so the caller gets the
//!   error (503 `store_unavailable`) and the client retries with what it holds.
//!   That is why the Cluster client is built with no retries. Only a command
//!   that waited for a connection the server refused, so was never sent, is
//!   tried once more ([`never_sent`]).
//! - **TLS** (`rediss://`): the server certificate is verified against the
//!   system roots plus `store.redis.tls.ca_file`, with its hostname; a client
//!   certificate is presented when configured (mTLS).

mod sentinel;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, ProtocolVersion,
    RedisFuture, TlsCertificates, Value,
};
use secrecy::ExposeSecret;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::OnceCell;

use crate::config::{RedisConfig, RedisNodes, RedisTlsConfig};
use crate::store::StoreError;
use sentinel::Sentinel;

/// One command's answer must arrive within this.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// One TCP (+TLS) connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A whole store call, reconnection included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Receives RESP3 pushes (pub/sub messages, disconnections).
pub type PushSender = Arc<dyn Fn(redis::PushInfo) + Send + Sync>;

fn push_sender(f: PushSender) -> impl redis::aio::AsyncPushSender + Clone {
    move |p: redis::PushInfo| {
        f(p);
        Ok::<(), std::convert::Infallible>(())
    }
}

pub struct Redis {
    /// Tells this client's per-worker connections from another's.
    id: usize,
    target: Target,
    /// Set for the pub/sub client: it keeps one connection (its subscription).
    push: Option<PushSender>,
}

enum Target {
    Single(Box<Single>),
    Cluster(Box<Cluster>),
    Sentinel(Box<Sentinel>),
}

/// One server: one shared connection, and one per worker.
struct Single {
    client: redis::Client,
    config: ConnectionManagerConfig,
    shared: ConnectionManager,
}

struct Cluster {
    client: ClusterClient,
    /// Connected on first use, so that a Redis that is down at start is retried.
    shared: OnceCell<ClusterConnection>,
}

/// A connection for one or a few commands; cheap to get and to clone.
#[derive(Clone)]
pub enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A worker's own connections, by client id and connection epoch.
struct Local {
    id: usize,
    epoch: u64,
    handle: Handle,
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

fn err(e: redis::RedisError) -> StoreError {
    // RedisError texts name the failing command or the I/O error, never a URL.
    StoreError::Redis(e)
}

/// Whether the connection behind an error is suspect: lost, refused, timed
/// out, or a server that is no longer the master (READONLY).
fn connection_failed(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

/// The client spawns its reconnection tasks where it is built; the sidecar is
/// built before the workers start their runtimes, so the shared connection gets
/// a runtime of its own that lives as long as the process.
fn io_runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("redis-io")
        .enable_all()
        .build()
        .map_err(|e| StoreError::io("cannot start the Redis I/O runtime", e))?;
    Ok(RT.get_or_init(|| rt))
}

/// Whether the caller runs on a worker's current-thread runtime.
fn on_worker() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

/// The certificates of `store.redis.tls`, read now.
fn certificates(tls: &RedisTlsConfig) -> Result<TlsCertificates, StoreError> {
    let invalid = |e: String| StoreError::Invalid(format!("store.redis.tls: {e}"));
    let root_cert = match &tls.ca_file {
        Some(ca) => Some(crate::tls::roots_pem_with(ca).map_err(invalid)?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert, key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| invalid(format!("cannot read {}: {e}", p.display())))
            };
            Some(ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            })
        }
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// A URL's connection info with `password` (when the URL has none), speaking
/// RESP3: a connection then reports its own loss (a push), so the client
/// reconnects at once instead of on the next command, which would fail.
fn connection_info(
    url: &secrecy::SecretString,
    config: &RedisConfig,
) -> Result<ConnectionInfo, StoreError> {
    let info = url
        .expose_secret()
        .into_connection_info()
        .map_err(|_| StoreError::Invalid("store.redis.url: not a valid Redis URL".into()))?;
    let mut settings = info.redis_settings().clone();
    if settings.password().is_none() {
        if let Some(p) = &config.password {
            settings = settings.set_password(p.expose_secret());
        }
    }
    Ok(info.set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3)))
}

impl Redis {
    /// Builds the client without connecting. With `push`, the connection speaks
    /// RESP3 and hands every push to it, resubscribing after a reconnection.
    pub fn open(config: &RedisConfig, push: Option<PushSender>) -> Result<Redis, StoreError> {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        // The Redis client builds its rustls configs with the process default
        // provider; two are compiled in (ring comes with a dependency), so name
        // ours. Already installed (a second store, a test) is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let certs = match (&config.tls, config.nodes.tls()) {
            (Some(tls), true) => Some(certificates(tls)?),
            (None, true) => Some(TlsCertificates {
                client_tls: None,
                root_cert: None,
            }),
            (_, false) => None,
        };
        let target = match &config.nodes {
            RedisNodes::Sentinel { master_name, urls } => Target::Sentinel(Box::new(
                Sentinel::open(config, master_name, urls, certs, push.clone())?,
            )),
            RedisNodes::Servers(urls) => {
                let infos = urls
                    .iter()
                    .map(|u| connection_info(u, config))
                    .collect::<Result<Vec<_>, _>>()?;
                match infos.as_slice() {
                    [info] => Self::single(info.clone(), certs, push.clone())?,
                    _ => Self::cluster(infos, certs, push.clone())?,
                }
            }
        };
        Ok(Redis {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            target,
            push,
        })
    }

    fn single(
        info: ConnectionInfo,
        certs: Option<TlsCertificates>,
        push: Option<PushSender>,
    ) -> Result<Target, StoreError> {
        let client = match certs {
            Some(c) => redis::Client::build_with_tls(info, c),
            None => redis::Client::open(info),
        }
        .map_err(err)?;
        let config = manager_config(push);
        Ok(Target::Single(Box::new(Single {
            shared: lazy_manager(&client, &config)?,
            client,
            config,
        })))
    }

    fn cluster(
        infos: Vec<ConnectionInfo>,
        certs: Option<TlsCertificates>,
        push: Option<PushSender>,
    ) -> Result<Target, StoreError> {
        let mut builder = ClusterClient::builder(infos)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            // A lost answer is not sent again (module doc); MOVED/ASK still are.
            .retries(0);
        if let Some(c) = certs {
            builder = builder.certs(c);
        }
        // RESP3 as for one server: a lost node connection is redialled at once.
        builder = builder.use_protocol(ProtocolVersion::RESP3);
        if let Some(tx) = push {
            builder = builder.push_sender(push_sender(tx));
        }
        Ok(Target::Cluster(Box::new(Cluster {
            client: builder.build().map_err(err)?,
            shared: OnceCell::new(),
        })))
    }

    /// A handle and the epoch of the connection behind it (it changes when a
    /// Sentinel-managed master is found again; subscriptions are per epoch).
    pub async fn handle(&self) -> Result<(Handle, u64), StoreError> {
        let local = self.push.is_none() && on_worker();
        if local {
            let epoch = match &self.target {
                Target::Sentinel(s) => s.epoch(),
                _ => 0,
            };
            let cached = LOCAL.with_borrow(|l| {
                l.iter()
                    .find(|c| c.id == self.id && c.epoch == epoch)
                    .map(|c| c.handle.clone())
            });
            if let Some(h) = cached {
                return Ok((h, epoch));
            }
        }
        let (handle, epoch) = match &self.target {
            Target::Single(s) => match local {
                true => (Handle::Single(lazy_manager(&s.client, &s.config)?), 0),
                false => (Handle::Single(s.shared.clone()), 0),
            },
            Target::Cluster(c) => match local {
                true => (
                    Handle::Cluster(c.client.get_async_connection().await.map_err(err)?),
                    0,
                ),
                false => {
                    let conn = c
                        .shared
                        .get_or_try_init(|| c.client.get_async_connection())
                        .await
                        .map_err(err)?;
                    (Handle::Cluster(conn.clone()), 0)
                }
            },
            Target::Sentinel(s) => {
                let (manager, epoch) = s.master(local).await?;
                (Handle::Single(manager), epoch)
            }
        };
        if local {
            LOCAL.with_borrow_mut(|l| {
                l.retain(|c| c.id != self.id);
                l.push(Local {
                    id: self.id,
                    epoch,
                    handle: handle.clone(),
                });
            });
        }
        Ok((handle, epoch))
    }

    /// Runs `f` on a handle, bounded by [`OP_TIMEOUT`]; a failed connection is
    /// replaced for the next call, `f` is not run again.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run_at(op, |h, _| f(h)).await
    }

    /// [`Redis::run`], telling `f` the epoch of the connection it runs on.
    pub async fn run_at<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Handle, u64) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut epoch = None;
        let work = async {
            let (handle, e) = self.handle().await?;
            epoch = Some(e);
            f(handle, e).await.map_err(|error| {
                if connection_failed(&error) {
                    self.forget(e);
                }
                err(error)
            })
        };
        let result = tokio::time::timeout(OP_TIMEOUT, work).await;
        result.unwrap_or_else(|_| {
            if let Some(e) = epoch {
                self.forget(e);
            }
            Err(StoreError::Invalid(format!(
                "redis: `{op}` got no answer within {OP_TIMEOUT:?}"
            )))
        })
    }

    /// Whether this is a Redis Cluster (a user's keys and a session's hash
    /// are then in different slots).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// After a connection failure: this worker's connection is dropped (the
    /// next call connects afresh, so the first call after an outage does not
    /// meet the failed attempt), and a Sentinel master is looked up again (it
    /// may have failed over). The shared connection reconnects by itself.
    fn forget(&self, epoch: u64) {
        LOCAL.with_borrow_mut(|l| l.retain(|c| c.id != self.id));
        if let Target::Sentinel(s) = &self.target {
            s.forget(epoch);
        }
    }
}

fn manager_config(push: Option<PushSender>) -> ConnectionManagerConfig {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // Connection attempts, not commands: a command is never sent twice.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    match push {
        Some(tx) => config
            .set_push_sender(push_sender(tx))
            .set_automatic_resubscription(),
        None => config,
    }
}

/// A reconnecting connection, made on the caller's runtime (or the I/O runtime
/// outside one) and connected on first use.
fn lazy_manager(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
) -> Result<ConnectionManager, StoreError> {
    let _inside = match tokio::runtime::Handle::try_current() {
        Ok(_) => None,
        Err(_) => Some(io_runtime()?.enter()),
    };
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(err)
}

impl Handle {
    pub async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Handle::Single(c) => c.subscribe(channel).await,
            Handle::Cluster(c) => c.subscribe(channel).await,
        }
    }
}

/// The one case where a command is sent again: the connection it waited for
/// was refused, so it was never sent. (A connection left failed by an outage
/// answers its next command that way; the manager has started a new one by
/// then, and the second try waits for it.)
fn never_sent(e: &redis::RedisError) -> bool {
    e.is_connection_refusal()
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(e) if never_sent(&e) => c.req_packed_command(cmd).await,
                    r => r,
                }
            }),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => Box::pin(async move {
                match c.req_packed_commands(pipeline, offset, count).await {
                    Err(e) if never_sent(&e) => {
                        c.req_packed_commands(pipeline, offset, count).await
                    }
                    r => r,
                }
            }),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}
