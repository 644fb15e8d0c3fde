//! What a config builds that a reload replaces ([`Built`]), on top of what
//! lives as long as the process ([`Fixed`]).

use std::sync::Arc;

use crate::admin::operator::Operator;
use crate::admin::AdminSettings;
use crate::auth::keys::TokenKey;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::events::webhook::Webhook;
use crate::metrics::Metrics;
use crate::proxy::api::AuthApi;
use crate::proxy::gateway::Gateway;
use crate::proxy::login::LoginForwarder;
use crate::proxy::rewrite::Rewrite;
use crate::proxy::upstream::Upstream;
use crate::revocation::RevocationList;
use crate::server::Live;
use crate::sessions::ratelimit::RateLimits;
use crate::sessions::Sessions;
use crate::store::SessionStore;

/// What lives as long as the process: a reload builds on it, never replaces it.
#[derive(Clone)]
pub struct Fixed {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn SessionStore>,
    pub revocations: Arc<RevocationList>,
}

/// Everything built from one config that a reload replaces.
pub struct Built {
    pub live: Live,
    pub admin: AdminSettings,
    pub services: Services,
}

/// The rest of a [`Built`]: what background work uses.
pub struct Services {
    pub sessions: Arc<Sessions>,
    pub webhook: Option<Arc<Webhook>>,
    /// The `upstream.ca_file` content it was built with.
    pub(super) upstream_ca: Option<Vec<u8>>,
}

/// A previous build's upstream, kept (with every worker's idle connections
/// to it) when neither its settings nor its CA file changed.
pub(super) struct KeepUpstream {
    pub config: crate::config::UpstreamConfig,
    pub ca: Option<Vec<u8>>,
    pub upstream: Arc<Upstream>,
}

impl Built {
    /// Blocking: reads the TLS files and may resolve the upstream's name.
    /// The error names the key path.
    pub fn new(config: &Config, keys: &[Arc<TokenKey>], fixed: &Fixed) -> Result<Built, String> {
        Self::reusing(config, keys, fixed, None)
    }

    pub(super) fn reusing(
        config: &Config,
        keys: &[Arc<TokenKey>],
        fixed: &Fixed,
        keep: Option<KeepUpstream>,
    ) -> Result<Built, String> {
        let upstream_ca =
            match &config.upstream.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    format!("upstream.ca_file: cannot read {}: {e}", path.display())
                })?),
                None => None,
            };
        let upstream = match keep {
            Some(k) if k.config == config.upstream && k.ca == upstream_ca => k.upstream,
            _ => Upstream::new(&config.upstream)?,
        };
        let webhook = match &config.security_events.webhook {
            Some(w) => Some(
                Webhook::new(w, fixed.metrics.clone())
                    .map_err(|e| format!("security_events.webhook.{e}"))?,
            ),
            None => None,
        };
        let tls = match &config.server.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
                crate::tls::server_config(&t.cert_file, &t.key_file, config.server.http2)
                    .map_err(|e| format!("server.tls: {e}"))?,
            ))),
            None => None,
        };
        let sessions = Arc::new(
            Sessions::new(
                config,
                keys,
                fixed.store.clone(),
                fixed.revocations.clone(),
                fixed.metrics.clone(),
            )
            .with_webhook(webhook.clone()),
        );
        let auth = Arc::new(Authenticator::new(
            &config.tokens,
            keys,
            fixed.revocations.clone(),
            fixed.metrics.clone(),
        ));
        let rewrite = Arc::new(Rewrite::new(
            config.identity_headers.clone(),
            config.server.tls.is_some(),
            config
                .sessions
                .refresh_cookie
                .as_ref()
                .map(|c| c.name.clone()),
        ));
        let login = config
            .login
            .clone()
            .map(|l| LoginForwarder::new(l, config.upstream.revoke_header.clone()));
        let api = AuthApi::new(
            config,
            keys,
            sessions.clone(),
            auth.clone(),
            rewrite.clone(),
            login,
            // The shared buckets live in the store: a reload keeps their counts.
            RateLimits::new(
                &config.rate_limits,
                fixed.store.clone().shared_buckets(),
                &fixed.metrics,
            ),
        );
        let server = &config.server;
        Ok(Built {
            live: Live {
                gateway: Gateway::new(config, auth, api, rewrite, fixed.metrics.clone()),
                upstream,
                tls,
                http2: server.http2,
                header_read_timeout: server.header_read_timeout,
                max_headers: server.max_headers,
                max_header_bytes: server.max_header_bytes,
            },
            admin: AdminSettings {
                operator: config
                    .admin
                    .token
                    .as_ref()
                    .map(|t| Operator::new(t, sessions.clone())),
                head_timeout: server.header_read_timeout,
            },
            services: Services {
                sessions,
                webhook,
                upstream_ca,
            },
        })
    }
}
