//! Every metric of SPEC 7, registered once in one registry, served on the admin listener.

mod cells;

use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use cells::RequestMetrics;

pub const HTTP_REQUESTS: &str = "sessiongate_http_requests_total";
pub const HTTP_DURATION: &str = "sessiongate_http_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "sessiongate_upstream_request_duration_seconds";
pub const TOKEN_VALIDATIONS: &str = "sessiongate_token_validations_total";
pub const REFRESH: &str = "sessiongate_refresh_total";
pub const SECURITY_EVENTS: &str = "sessiongate_security_events_total";
pub const SESSIONS_CREATED: &str = "sessiongate_sessions_created_total";
pub const SESSIONS_REVOKED: &str = "sessiongate_sessions_revoked_total";
pub const REVOCATION_ENTRIES: &str = "sessiongate_revocation_list_entries";
pub const STORE_DURATION: &str = "sessiongate_store_operation_duration_seconds";
pub const REVOCATION_STALENESS: &str = "sessiongate_revocation_sync_staleness_seconds";
pub const STORE_ERRORS: &str = "sessiongate_store_errors_total";
pub const REVOCATION_EVICTIONS: &str = "sessiongate_revocation_list_evictions_total";
pub const REVOCATION_LAST_SYNC: &str = "sessiongate_revocation_last_sync_timestamp_seconds";
pub const WEBHOOK_DELIVERIES: &str = "sessiongate_webhook_deliveries_total";
pub const BUILD_INFO: &str = "sessiongate_build_info";
pub const CONFIG_RELOADS: &str = "sessiongate_config_reloads_total";
pub const CONFIG_LAST_RELOAD_OK: &str = "sessiongate_config_last_reload_successful";
pub const CONFIG_RESTART_PENDING: &str = "sessiongate_config_restart_pending";
pub const RATE_LIMIT_FALLBACKS: &str = "sessiongate_rate_limit_fallbacks_total";

/// The `route` label of the request metrics: which part of sessiongate answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Proxy,
    Login,
    Refresh,
    Sessions,
    Logout,
    Jwks,
    SecurityEvents,
    Admin,
}

impl Route {
    pub const ALL: [Route; 8] = [
        Route::Proxy,
        Route::Login,
        Route::Refresh,
        Route::Sessions,
        Route::Logout,
        Route::Jwks,
        Route::SecurityEvents,
        Route::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Login => "login",
            Route::Refresh => "refresh",
            Route::Sessions => "sessions",
            Route::Logout => "logout",
            Route::Jwks => "jwks",
            Route::SecurityEvents => "security_events",
            Route::Admin => "admin",
        }
    }
}
/// The `result` label values of `sessiongate_token_validations_total`.
/// The `result` label of `sessiongate_token_validations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenResult {
    Ok,
    Missing,
    Invalid,
    Expired,
    Revoked,
    Unavailable,
}

impl TokenResult {
    pub const ALL: [TokenResult; 6] = [
        TokenResult::Ok,
        TokenResult::Missing,
        TokenResult::Invalid,
        TokenResult::Expired,
        TokenResult::Revoked,
        TokenResult::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenResult::Ok => "ok",
            TokenResult::Missing => "missing",
            TokenResult::Invalid => "invalid",
            TokenResult::Expired => "expired",
            TokenResult::Revoked => "revoked",
            TokenResult::Unavailable => "unavailable",
        }
    }
}

/// The `result` label of `sessiongate_webhook_deliveries_total` (SPEC 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A 2xx answer.
    Ok,
    /// An attempt failed; another follows.
    Retried,
    /// The last attempt failed: the event is given up.
    Failed,
    /// Pushed out of the full queue as its oldest undelivered event (new, or
    /// waiting for a retry).
    Dropped,
}

impl Delivery {
    pub const ALL: [Delivery; 4] = [
        Delivery::Ok,
        Delivery::Retried,
        Delivery::Failed,
        Delivery::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Ok => "ok",
            Delivery::Retried => "retried",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

/// `upstream.request_timeout`'s default (SPEC 2).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Histogram buckets: 100 µs to ~37 s, and one more at `request_timeout` when
/// that is longer, so a request that ran into the timeout lands in a bucket of
/// its own rather than only in `+Inf` (a p99 would otherwise read "> 37 s").
pub fn duration_buckets(request_timeout: Duration) -> Vec<f64> {
    let mut buckets = exponential_buckets(0.0001, 2.5, 15).expect("valid buckets");
    let timeout = request_timeout.as_secs_f64();
    if buckets.last().is_some_and(|&top| timeout > top) {
        buckets.push(timeout);
    }
    buckets
}

pub struct Metrics {
    registry: Registry,
    /// Requests, their durations, upstream durations and token checks: the
    /// ones counted on the request path, in cells of each thread's own
    /// (`cells.rs`), so workers share no written cache line.
    requests: RequestMetrics,
    pub refresh: IntCounterVec,
    pub security_events: IntCounterVec,
    pub sessions_created: IntCounter,
    pub sessions_revoked: IntCounterVec,
    pub revocation_entries: IntGauge,
    pub store_duration: HistogramVec,
    pub revocation_staleness: prometheus::Gauge,
    pub store_errors: IntCounterVec,
    /// Unexpired revocations pushed out of the bounded list (a revoked
    /// session's tokens could pass again): should stay 0.
    pub revocation_evictions: IntCounter,
    pub revocation_last_sync: prometheus::Gauge,
    pub webhook_deliveries: IntCounterVec,
    /// Config reloads (SPEC 1), `result` ok or error.
    pub config_reloads: IntCounterVec,
    /// 1 while the config on disk is the one in use (or none was tried), 0
    /// after a failed reload: the next restart would not start.
    pub config_last_reload_ok: IntGauge,
    /// 1 while the applied config differs from the running one in a key only a restart applies.
    pub config_restart_pending: IntGauge,
    /// Rate-limit checks that used the replica's own bucket because the
    /// shared one (Redis) did not answer in time, by route (login, refresh).
    pub rate_limit_fallbacks: IntCounterVec,
}

impl Metrics {
    /// The metrics with buckets for the default `upstream.request_timeout` (30 s).
    pub fn new() -> Metrics {
        Self::with_request_timeout(DEFAULT_REQUEST_TIMEOUT)
    }

    /// The metrics, the duration histograms' top bucket reaching `request_timeout`.
    pub fn with_request_timeout(request_timeout: Duration) -> Metrics {
        let registry = Registry::new();
        let buckets = duration_buckets(request_timeout);
        let hist = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(buckets.clone());
        let m = Metrics {
            requests: RequestMetrics::new(buckets.clone()),
            refresh: IntCounterVec::new(
                Opts::new(REFRESH, "Refresh attempts, by result."),
                &["result"],
            )
            .expect("metric"),
            security_events: IntCounterVec::new(
                Opts::new(SECURITY_EVENTS, "Security events recorded, by type."),
                &["type"],
            )
            .expect("metric"),
            sessions_created: IntCounter::new(SESSIONS_CREATED, "Sessions created by login.")
                .expect("metric"),
            sessions_revoked: IntCounterVec::new(
                Opts::new(SESSIONS_REVOKED, "Sessions revoked, by reason."),
                &["reason"],
            )
            .expect("metric"),
            revocation_entries: IntGauge::new(
                REVOCATION_ENTRIES,
                "Sessions in the in-memory revocation list.",
            )
            .expect("metric"),
            store_duration: HistogramVec::new(
                hist(
                    STORE_DURATION,
                    "Session-store operations, by operation and backend.",
                ),
                &["op", "backend"],
            )
            .expect("metric"),
            revocation_staleness: prometheus::Gauge::new(
                REVOCATION_STALENESS,
                "Seconds since the revocation list was last in sync with the store.",
            )
            .expect("metric"),
            store_errors: IntCounterVec::new(
                Opts::new(
                    STORE_ERRORS,
                    "Session-store operations that failed, by operation and backend.",
                ),
                &["op", "backend"],
            )
            .expect("metric"),
            revocation_evictions: IntCounter::new(
                REVOCATION_EVICTIONS,
                "Unexpired revocations evicted from the bounded in-memory list.",
            )
            .expect("metric"),
            revocation_last_sync: prometheus::Gauge::new(
                REVOCATION_LAST_SYNC,
                "Unix time at which the revocation list was last confirmed in sync with the store.",
            )
            .expect("metric"),
            webhook_deliveries: IntCounterVec::new(
                Opts::new(
                    WEBHOOK_DELIVERIES,
                    "Security-event webhook outcomes, by result.",
                ),
                &["result"],
            )
            .expect("metric"),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    CONFIG_RELOADS,
                    "Config reloads (SIGHUP or a changed file), by result: error keeps the running config.",
                ),
                &["result"],
            )
            .expect("metric"),
            config_last_reload_ok: IntGauge::new(
                CONFIG_LAST_RELOAD_OK,
                "1 if the last config reload succeeded (or none was tried), 0 if the config on disk is invalid.",
            )
            .expect("metric"),
            config_restart_pending: IntGauge::new(
                CONFIG_RESTART_PENDING,
                "1 if the last applied config changed something only a restart applies (listeners, threads, store, revocation, Redis TLS files), else 0.",
            )
            .expect("metric"),
            rate_limit_fallbacks: IntCounterVec::new(
                Opts::new(
                    RATE_LIMIT_FALLBACKS,
                    "Rate-limit checks answered by this replica's own bucket because the shared one did not answer, by route.",
                ),
                &["route"],
            )
            .expect("metric"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.refresh.clone()),
            Box::new(m.security_events.clone()),
            Box::new(m.sessions_created.clone()),
            Box::new(m.sessions_revoked.clone()),
            Box::new(m.revocation_entries.clone()),
            Box::new(m.store_duration.clone()),
            Box::new(m.revocation_staleness.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.revocation_evictions.clone()),
            Box::new(m.revocation_last_sync.clone()),
            Box::new(m.webhook_deliveries.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.config_last_reload_ok.clone()),
            Box::new(m.config_restart_pending.clone()),
            Box::new(m.rate_limit_fallbacks.clone()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .expect("each metric is registered once");
        }
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                BUILD_INFO,
                "Always 1; the version as `sessiongate --version` prints it.",
            ),
            &["version"],
        )
        .expect("metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.registry
            .register(Box::new(build_info))
            .expect("each metric is registered once");
        // Make the label sets an operator alerts on visible from the start.
        for r in ["ok", "error"] {
            m.config_reloads.with_label_values(&[r]);
        }
        m.config_last_reload_ok.set(1);
        for r in [
            "rotated", "grace", "reused", "invalid", "expired", "revoked",
        ] {
            m.refresh.with_label_values(&[r]);
        }
        for t in crate::names::event::KINDS {
            m.security_events.with_label_values(&[t]);
        }
        for r in [
            "user",
            "revoke_all",
            "logout",
            "reuse",
            "limit",
            "admin",
            "upstream",
        ] {
            m.sessions_revoked.with_label_values(&[r]);
        }
        for r in [Route::Login, Route::Refresh] {
            m.rate_limit_fallbacks.with_label_values(&[r.as_str()]);
        }
        for d in Delivery::ALL {
            m.webhook_deliveries.with_label_values(&[d.as_str()]);
        }
        m
    }

    /// Counts one webhook outcome.
    pub fn webhook_delivery(&self, result: Delivery) {
        self.webhook_deliveries
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// Counts one answered request and its duration.
    pub fn observe_request(&self, route: Route, status: u16, seconds: f64) {
        self.requests.request(route, status, seconds);
    }

    /// Counts one upstream exchange's duration.
    pub fn observe_upstream(&self, seconds: f64) {
        self.requests.upstream(seconds);
    }

    /// Counts one token check by its `result` label.
    pub fn token_validation(&self, result: TokenResult) {
        self.requests.token(result);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail on a Vec");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest finite `le` of `metric`'s buckets in the rendered exposition.
    fn top_bucket(m: &Metrics, metric: &str) -> f64 {
        let text = String::from_utf8(m.render()).unwrap();
        let prefix = format!("{metric}_bucket{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .filter(|le| *le != "+Inf")
            .map(|le| le.parse::<f64>().unwrap())
            .fold(0.0, f64::max)
    }

    // Proves a request that takes the whole default request_timeout (30 s) is
    // in a finite bucket of both duration histograms (the old top was ~15 s).
    #[test]
    fn top_bucket_reaches_the_default_request_timeout() {
        let m = Metrics::new();
        m.observe_request(Route::Proxy, 504, 30.0);
        m.observe_upstream(30.0);
        assert!(top_bucket(&m, HTTP_DURATION) >= 30.0);
        assert!(top_bucket(&m, UPSTREAM_DURATION) >= 30.0);
    }

    // Proves a longer configured request_timeout gets a bucket of its own, and a
    // shorter one adds none.
    #[test]
    fn a_longer_request_timeout_gets_its_own_bucket() {
        let m = Metrics::with_request_timeout(Duration::from_secs(120));
        m.observe_request(Route::Proxy, 504, 120.0);
        m.observe_upstream(120.0);
        assert_eq!(top_bucket(&m, HTTP_DURATION), 120.0);
        assert_eq!(top_bucket(&m, UPSTREAM_DURATION), 120.0);
        assert_eq!(
            duration_buckets(Duration::from_secs(5)),
            duration_buckets(DEFAULT_REQUEST_TIMEOUT)
        );
    }
}
