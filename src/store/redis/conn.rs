//! Connections to one Redis server or a Redis Cluster behind one handle type,
//! with every wait bounded: a dead Redis costs a request at most
//! [`OP_TIMEOUT`], never a pile-up of callers.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, RedisFuture, Value};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::store::StoreError;

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

/// Where commands go: one server (reconnecting by itself) or a cluster
/// (connected on first use, so that a Redis that is down at start is retried).
pub enum Redis {
    Single(ConnectionManager),
    Cluster(Box<Cluster>),
}

pub struct Cluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

/// A connection for one or a few commands; cheap to get and to clone.
#[derive(Clone)]
pub enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn err(e: redis::RedisError) -> StoreError {
    // RedisError texts name the failing command or the I/O error, never a URL.
    StoreError::Redis(e)
}

/// The client spawns its reconnection tasks where it is built; the sidecar is
/// built before the workers start their runtimes, so it gets one of its own that
/// lives as long as the process.
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

impl Redis {
    /// Builds the client for `urls` (one = a server, several = a cluster)
    /// without connecting. With `push`, the connection speaks RESP3 and hands
    /// every push to it, resubscribing after a reconnection.
    pub fn open(urls: &[SecretString], push: Option<PushSender>) -> Result<Redis, StoreError> {
        let resp3 = push.is_some();
        let infos = urls
            .iter()
            .map(|u| {
                let info = u.expose_secret().into_connection_info().map_err(|_| {
                    StoreError::Invalid("store.redis.url: not a valid Redis URL".into())
                })?;
                Ok(match resp3 {
                    true => {
                        let settings = info
                            .redis_settings()
                            .clone()
                            .set_protocol(ProtocolVersion::RESP3);
                        info.set_redis_settings(settings)
                    }
                    false => info,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if let [info] = infos.as_slice() {
            let _inside = match tokio::runtime::Handle::try_current() {
                Ok(_) => None,
                Err(_) => Some(io_runtime()?.enter()),
            };
            let client = redis::Client::open(info.clone()).map_err(err)?;
            let mut config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            if let Some(tx) = push {
                config = config
                    .set_push_sender(push_sender(tx))
                    .set_automatic_resubscription();
            }
            let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
            return Ok(Redis::Single(manager));
        }
        let mut builder = ClusterClient::builder(infos)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(1);
        if let Some(tx) = push {
            builder = builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push_sender(tx));
        }
        Ok(Redis::Cluster(Box::new(Cluster {
            client: builder.build().map_err(err)?,
            conn: OnceCell::new(),
        })))
    }

    pub async fn handle(&self) -> Result<Handle, StoreError> {
        match self {
            Redis::Single(m) => Ok(Handle::Single(m.clone())),
            Redis::Cluster(c) => c
                .conn
                .get_or_try_init(|| c.client.get_async_connection())
                .await
                .map(|c| Handle::Cluster(c.clone()))
                .map_err(err),
        }
    }

    /// Runs `f` on a handle, bounded by [`OP_TIMEOUT`].
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let handle = self.handle().await?;
            f(handle).await.map_err(err)
        };
        tokio::time::timeout(OP_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Invalid(format!(
                    "redis: `{op}` got no answer within {OP_TIMEOUT:?}"
                )))
            })
    }
}

impl Handle {
    pub async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Handle::Single(c) => c.subscribe(channel).await,
            Handle::Cluster(c) => c.subscribe(channel).await,
        }
    }
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
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
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
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
