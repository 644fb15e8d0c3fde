//! Graceful shutdown (SPEC 1): on SIGTERM/SIGINT stop accepting, let
//! in-flight requests finish for up to `server.shutdown_grace`, then exit 0.
//! The drain ends as soon as the last request is done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::SessionStore;

/// `true` once shutdown has begun.
pub type ShutdownWatch = tokio::sync::watch::Receiver<bool>;

/// Counts requests in progress: one counter per worker, so that counting
/// shares no cache line between workers on the request path.
#[derive(Default)]
pub struct InFlight {
    workers: std::sync::Mutex<Vec<Arc<WorkerCount>>>,
    draining: AtomicBool,
}

/// One worker's requests in progress (padded to its own cache line).
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerCount(AtomicUsize);

pub struct InFlightGuard<'a>(&'a WorkerCount);

impl InFlight {
    /// A counter for a new worker.
    pub fn worker(&self) -> Arc<WorkerCount> {
        let count = Arc::new(WorkerCount::default());
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(count.clone());
        count
    }

    pub fn count(&self) -> usize {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|w| w.0.load(Ordering::Acquire))
            .sum()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl WorkerCount {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits for SIGTERM or SIGINT: both mean "graceful terminate".
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install the SIGTERM/SIGINT handlers");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: draining"),
        _ = int.recv() => tracing::info!("SIGINT received: draining"),
    }
}

/// After shutdown began: waits for in-flight requests (at most `grace`) and
/// flushes the store. What is still running ends with the process.
pub struct Drain {
    pub inflight: Arc<InFlight>,
    pub grace: Duration,
    pub store: Arc<dyn SessionStore>,
}

const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl Drain {
    pub async fn run(&self) {
        self.inflight.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + self.grace;
        // Let accept loops notice the broadcast before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.inflight.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.inflight.count();
        if left > 0 {
            tracing::warn!(
                requests = left,
                "shutdown grace period over; cutting remaining requests"
            );
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, self.store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing the store at shutdown failed"),
            Err(_) => tracing::warn!("flushing the store at shutdown timed out"),
        }
        tracing::info!("sessiongate stopped");
    }
}
