//! Redis at scale (issue 17), against real servers each test starts and
//! kills: TLS, a three-master Cluster, a Sentinel failover, and rate limits
//! shared by the replicas. One test binary for the four, so CI links once.

mod common;

#[path = "redis_at_scale/cluster.rs"]
mod cluster;
#[path = "redis_at_scale/rate_limits.rs"]
mod rate_limits;
#[path = "redis_at_scale/sentinel.rs"]
mod sentinel;
#[path = "redis_at_scale/tls.rs"]
mod tls;
