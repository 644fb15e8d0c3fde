//! Logs: `tracing` to stdout, JSON when stdout is not a terminal or
//! `SESSIONGATE_LOG_FORMAT=json`, human text otherwise; level from `RUST_LOG`.
//! pingora logs through `log`, bridged here.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,pingora=warn,pingora_core=warn,pingora_proxy=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = match std::env::var("SESSIONGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
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
        let _ = tracing_log::LogTracer::init();
    }
}
