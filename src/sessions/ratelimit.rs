//! Token buckets per client IP for login and refresh (429 + Retry-After):
//! shared by every replica when the store offers shared buckets (Redis),
//! else, and while those do not answer, this process's own.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use prometheus::IntCounter;

use crate::config::{RateLimitConfig, RateLimitsConfig};
use crate::metrics::{Metrics, Route};
use crate::store::SharedBuckets;

/// How long a check waits for the shared bucket before it uses the local one.
/// A healthy Redis answers in about a millisecond; a dead one would otherwise
/// hold the request for the store's whole 1 s bound here, and again for the
/// login or refresh itself. 200 ms is far above any healthy answer and still
/// short next to what a user notices.
pub const SHARED_WAIT: Duration = Duration::from_millis(200);

/// At most one warning per this while the shared buckets fail.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The login and refresh limits of one config.
pub struct RateLimits {
    pub login: RouteLimit,
    pub refresh: RouteLimit,
}

impl RateLimits {
    /// With `shared`, every replica draws from one bucket per IP; the local
    /// buckets serve only while it does not answer.
    pub fn new(
        config: &RateLimitsConfig,
        shared: Option<Arc<dyn SharedBuckets>>,
        metrics: &Metrics,
    ) -> RateLimits {
        let outage = Arc::new(Outage::default());
        let limit = |route: Route, limit: RateLimitConfig| RouteLimit {
            route,
            limit,
            local: RateLimiter::new(limit),
            shared: shared.clone().map(|buckets| Shared {
                buckets,
                fallbacks: metrics
                    .rate_limit_fallbacks
                    .with_label_values(&[route.as_str()]),
                outage: outage.clone(),
            }),
        };
        RateLimits {
            login: limit(Route::Login, config.login),
            refresh: limit(Route::Refresh, config.refresh),
        }
    }
}

/// One route's limit.
pub struct RouteLimit {
    route: Route,
    limit: RateLimitConfig,
    local: RateLimiter,
    shared: Option<Shared>,
}

struct Shared {
    buckets: Arc<dyn SharedBuckets>,
    /// `sessiongate_rate_limit_fallbacks_total{route}`.
    fallbacks: IntCounter,
    outage: Arc<Outage>,
}

impl RouteLimit {
    /// `Ok(())` to go ahead, or `Err(seconds)` to wait. Without shared buckets
    /// this is the local check and nothing else.
    pub async fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(shared) = &self.shared else {
            return self.local.check(ip);
        };
        let asked = shared.buckets.take(self.route.as_str(), ip, self.limit);
        let failure = match tokio::time::timeout(SHARED_WAIT, asked).await {
            Ok(Ok(answer)) => {
                shared.outage.answered();
                return answer;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {SHARED_WAIT:?}"),
        };
        // Never open: this replica's own bucket limits the request instead.
        shared.fallbacks.inc();
        shared.outage.failed(self.route, &failure);
        self.local.check(ip)
    }
}

/// Whether the shared buckets are failing, and when that was last logged.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    warned: Mutex<Option<Instant>>,
}

impl Outage {
    fn answered(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("shared rate-limit buckets answer again");
        }
    }

    fn failed(&self, route: Route, error: &str) {
        self.down.store(true, Ordering::Relaxed);
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                route = route.as_str(),
                error,
                "shared rate-limit buckets unavailable: each replica limits with its own until they answer"
            );
        }
    }
}

/// This process's own buckets.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimitConfig) -> Self {
        RateLimiter {
            per_sec: f64::from(limit.per_minute) / 60.0,
            burst: f64::from(limit.burst),
            // An idle client's bucket is full again after burst/rate; forget it then.
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// `Ok(())` to go ahead, or `Err(seconds)` to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let bucket = self.buckets.get_with(ip, || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.burst,
                at: now,
            }))
        });
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies_per_ip() {
        let rl = RateLimiter::new(RateLimitConfig {
            per_minute: 60,
            burst: 3,
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at(a, t0).is_ok());
        }
        assert_eq!(rl.check_at(a, t0), Err(1));
        assert!(rl.check_at(b, t0).is_ok(), "another IP has its own bucket");
        assert!(rl.check_at(a, t0 + Duration::from_millis(1100)).is_ok());
    }
}
