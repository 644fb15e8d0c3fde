//! Token buckets per client IP for login and refresh (429 + Retry-After).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::RateLimitConfig;

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
