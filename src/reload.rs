//! Hot reload (SPEC 1): on SIGHUP, and soon after a change to the config
//! file or a file it names, the config is read and validated again. A valid
//! one replaces everything built from it ([`Built`]) for new connections and
//! requests; connections stay open and requests under way finish with what
//! they started with. An invalid one changes nothing, and its problems are
//! logged with their key paths. `sessiongate_config_reloads_total` counts both.
//!
//! What a reload cannot change (the listeners, the store, the worker count
//! and the revocation list's settings) keeps its start-up value; a change
//! there is logged at warn on every reload until the next restart.
//!
//! Files are watched through their directories (`notify`, inotify on
//! Linux): Kubernetes updates a mounted Secret or ConfigMap by swapping a
//! `..data` symlink, which a watch on the file itself never sees. A change
//! is acted on when the content of a watched file differs from the last
//! reload's, so a touch or an unrelated file in the same directory costs a
//! few small reads and nothing else.

mod build;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use build::{Built, Fixed, Services};

use crate::admin::Admin;
use crate::config::{Config, RedisNodes, StoreConfig};
use crate::proxy::upstream::Upstream;
use crate::server::Current;
use crate::sessions::Sessions;
use crate::shutdown::ShutdownWatch;
use build::KeepUpstream;
use watch::{concerns, fingerprint, DirWatch, SETTLE};

/// Keeps the running config current: answers SIGHUP and file changes.
pub struct Reloader {
    /// The config the process started with: the listeners and store in use.
    started: Config,
    fixed: Fixed,
    current: Arc<Current>,
    admin: Arc<Admin>,
    shutdown: ShutdownWatch,
    state: Mutex<State>,
}

/// The last config that loaded, and what was built from it that is not in [`Live`].
struct State {
    config: Config,
    services: Services,
}

impl Reloader {
    /// `services` came from `config`, with the [`Live`] in `current` and the
    /// settings in `admin`; its webhook's workers run.
    pub fn new(
        config: Config,
        services: Services,
        fixed: Fixed,
        current: Arc<Current>,
        admin: Arc<Admin>,
        shutdown: ShutdownWatch,
    ) -> Reloader {
        Reloader {
            started: config.clone(),
            fixed,
            current,
            admin,
            shutdown,
            state: Mutex::new(State { config, services }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sessions service of the current config.
    pub fn sessions(&self) -> Arc<Sessions> {
        self.state().services.sessions.clone()
    }

    /// The upstream of the current config.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.current.load().upstream.clone()
    }

    pub fn cleanup_interval(&self) -> Duration {
        self.state().config.sessions.cleanup_interval
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.state().config.server.shutdown_grace
    }

    /// Reads the config file again and, if it is valid, puts it in use.
    pub async fn reload(&self, why: &str) {
        let (file, keep) = {
            let state = self.state();
            (
                state.config.file.clone(),
                KeepUpstream {
                    config: state.config.upstream.clone(),
                    ca: state.services.upstream_ca.clone(),
                    upstream: self.upstream(),
                },
            )
        };
        let fixed = self.fixed.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = crate::config::load(&file).map_err(|e| e.problems)?;
            let keys = crate::auth::keys::load(&config).map_err(|e| e.problems)?;
            let built = Built::reusing(&config, &keys, &fixed, Some(keep)).map_err(|e| vec![e])?;
            Ok::<_, Vec<String>>((config, built))
        })
        .await
        .unwrap_or_else(|e| Err(vec![format!("the reload task failed: {e}")]));
        match loaded {
            Ok((config, built)) => {
                self.put_in_use(config, built);
                self.count("ok");
                tracing::info!(trigger = why, "config reloaded");
            }
            Err(problems) => {
                self.count("error");
                for problem in &problems {
                    tracing::warn!(%problem, "config reload refused");
                }
                tracing::error!(
                    trigger = why,
                    problems = problems.len(),
                    "config reload failed: the running config stays"
                );
            }
        }
    }

    fn count(&self, result: &str) {
        let metrics = &self.fixed.metrics;
        metrics.config_reloads.with_label_values(&[result]).inc();
        metrics.config_last_reload_ok.set(i64::from(result == "ok"));
    }

    fn put_in_use(&self, config: Config, built: Built) {
        let pending = needs_restart(&self.started, &config);
        self.fixed
            .metrics
            .config_restart_pending
            .set(i64::from(!pending.is_empty()));
        for key in pending {
            tracing::warn!(
                key,
                "changed in the config, but takes effect only at the next restart; the running value stays"
            );
        }
        for warning in &config.warnings {
            tracing::warn!(%warning, "config warning");
        }
        // Before a token of a longer lifetime can be issued or accepted.
        self.fixed
            .revocations
            .extend_token_lifetime(config.tokens.access_ttl + config.tokens.leeway);
        let mut state = self.state();
        let services = built.services;
        if let Some(hook) = &services.webhook {
            hook.spawn_workers(self.shutdown.clone());
        }
        match (&services.webhook, &state.services.webhook) {
            (Some(new), Some(old)) => new.take_over(old),
            (None, Some(old)) => old.retire(),
            _ => {}
        }
        self.current.replace(built.live);
        self.admin.reconfigure(built.admin);
        *state = State { config, services };
    }

    /// The config file and every file it names, absolute.
    fn watched(&self) -> Vec<PathBuf> {
        let state = self.state();
        std::iter::once(&state.config.file)
            .chain(&state.config.files)
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect()
    }

    /// Reloads on SIGHUP and on file changes until shutdown. The SIGHUP
    /// handler is installed before this returns, so an early SIGHUP never
    /// takes the process down.
    pub fn spawn(self: Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = signal(SignalKind::hangup())?;
        tokio::spawn(self.run(hangup));
        Ok(())
    }

    async fn run(self: Arc<Self>, mut hangup: tokio::signal::unix::Signal) {
        let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut dirs = DirWatch::new(tx);
        let mut files = self.watched();
        dirs.watch(&files);
        let mut seen = fingerprint(files.clone()).await;
        let mut shutdown = self.shutdown.clone();
        loop {
            let why = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = hangup.recv() => "SIGHUP",
                Some(paths) = changes.recv() => {
                    if !concerns(&paths, &files) {
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while changes.try_recv().is_ok() {}
                    let now = fingerprint(files.clone()).await;
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "a watched file changed"
                }
            };
            self.reload(why).await;
            let watched = self.watched();
            if watched != files {
                files = watched;
                dirs.watch(&files);
                seen = fingerprint(files.clone()).await;
            }
        }
    }
}

/// The key paths whose change a reload cannot apply, compared with the
/// config the process started with.
fn needs_restart(started: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (started, new);
    [
        ("server.listen", a.server.listen == b.server.listen),
        (
            "server.admin_listen",
            a.server.admin_listen == b.server.admin_listen,
        ),
        ("server.threads", a.server.threads == b.server.threads),
        ("store", same_store(&a.store, &b.store)),
        ("revocation", a.revocation == b.revocation),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(key, _)| key)
    .collect()
}

fn same_store(a: &StoreConfig, b: &StoreConfig) -> bool {
    match (a, b) {
        (StoreConfig::Sqlite { path: a }, StoreConfig::Sqlite { path: b }) => a == b,
        (StoreConfig::Redis(a), StoreConfig::Redis(b)) => {
            let secrets_equal = |x: &[SecretString], y: &[SecretString]| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|(x, y)| x.expose_secret() == y.expose_secret())
            };
            let same_nodes = match (&a.nodes, &b.nodes) {
                (RedisNodes::Servers(x), RedisNodes::Servers(y)) => secrets_equal(x, y),
                (
                    RedisNodes::Sentinel {
                        master_name: m,
                        urls: x,
                    },
                    RedisNodes::Sentinel {
                        master_name: n,
                        urls: y,
                    },
                ) => m == n && secrets_equal(x, y),
                _ => false,
            };
            let same_password = match (&a.password, &b.password) {
                (Some(x), Some(y)) => x.expose_secret() == y.expose_secret(),
                (x, y) => x.is_none() && y.is_none(),
            };
            a.key_prefix == b.key_prefix && same_nodes && same_password && a.tls == b.tls
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listeners_store_threads_and_revocation_need_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, yaml: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, yaml).unwrap();
            crate::config::load(&path).unwrap()
        };
        let base = "upstream: {url: http://127.0.0.1:3000}\ntokens: {keys: [{kid: k, alg: HS256, secret: 0123456789abcdef0123456789abcdef}]}\n";
        let a = write("a.yaml", base);
        let b = write(
            "b.yaml",
            &format!("{base}server: {{listen: 127.0.0.1:1, shutdown_grace: 1s}}\nstore: {{backend: sqlite, sqlite: {{path: other.db}}}}\nrevocation: {{cache_entries: 5000}}\nsessions: {{idle_timeout: 1d}}\n"),
        );
        assert_eq!(needs_restart(&a, &a), Vec::<&str>::new());
        assert_eq!(
            needs_restart(&a, &b),
            vec!["server.listen", "store", "revocation"]
        );
    }
}
