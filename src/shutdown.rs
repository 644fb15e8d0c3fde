//! Graceful shutdown (SPEC 1): on SIGTERM/SIGINT stop accepting, let
//! in-flight requests finish for up to `server.shutdown_grace`, then exit 0.
//!
//! pingora's own graceful path sleeps the whole grace period even when idle;
//! this watcher exits as soon as the last request is done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;

use crate::store::SessionStore;

/// Counts requests in progress.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    draining: AtomicBool,
}

pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// SIGTERM and SIGINT both mean "graceful terminate"; SIGQUIT stays pingora's upgrade.
pub struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: draining"),
            _ = int.recv() => tracing::info!("SIGINT received: draining"),
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// Waits for the shutdown broadcast, then for in-flight requests (at most
/// `grace`), flushes the store, and exits the process with 0.
pub struct Drain {
    pub inflight: Arc<InFlight>,
    pub grace: Duration,
    pub store: Arc<dyn SessionStore>,
}

const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
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
        crate::logging::flush();
        remove_scratch_dirs();
        std::process::exit(0);
    }
}

static SCRATCH_DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A directory to delete when the process stops after draining (`demo`'s
/// temporary store and key: the process exits without unwinding).
pub fn remove_on_exit(dir: std::path::PathBuf) {
    SCRATCH_DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir);
}

fn remove_scratch_dirs() {
    let dirs = std::mem::take(&mut *SCRATCH_DIRS.lock().unwrap_or_else(|p| p.into_inner()));
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("sessiongate: could not remove {}: {e}", dir.display());
        }
    }
}
