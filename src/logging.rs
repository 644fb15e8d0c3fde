//! Logs: `tracing` to stdout, JSON when stdout is not a terminal or
//! `SESSIONGATE_LOG_FORMAT=json`, human text otherwise; level from `RUST_LOG`.
//! pingora logs through `log`, bridged here.
//!
//! Lines are written by a background thread through a buffer that is flushed
//! whenever the queue runs empty, so a request never waits on a stdout
//! syscall. Nothing is dropped: a full queue slows producers instead.
//! [`flush`] must run before the process exits.

use std::io::{BufWriter, IsTerminal};
use std::sync::Mutex;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,pingora=warn,pingora_core=warn,pingora_proxy=warn";

static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = match std::env::var("SESSIONGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("sessiongate-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!json && std::io::stdout().is_terminal())
        .with_target(true);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        *GUARD.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }
}

/// Writes out every queued line. Call before `std::process::exit`.
pub fn flush() {
    // Dropping the guard makes the writer thread drain the queue and flush.
    drop(GUARD.lock().unwrap_or_else(|p| p.into_inner()).take());
}
