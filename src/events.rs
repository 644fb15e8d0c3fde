//! Security events (SPEC 8): each is one JSON log line with `"target": "security"`,
//! a stored row kept for `security_events.retain`, and a metric.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::{By, SecurityEvent, SessionStore};
use crate::time::rfc3339_ms;

pub const REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";
pub const NEW_IP: &str = "new_ip";
pub const NEW_DEVICE: &str = "new_device";
pub const SESSION_REVOKED: &str = "session_revoked";
pub const REVOKE_ALL: &str = "revoke_all";
pub const LOGIN: &str = "login";

pub const KINDS: &[&str] = &[
    REFRESH_TOKEN_REUSE,
    NEW_IP,
    NEW_DEVICE,
    SESSION_REVOKED,
    REVOKE_ALL,
    LOGIN,
];

pub struct Events {
    store: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

impl Events {
    pub fn new(store: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> Self {
        Events { store, metrics }
    }

    /// Logs, counts and stores `event`. The log line and metric never wait on
    /// the store; a failed write is logged (the event itself is already on record in the log).
    pub async fn record(&self, event: SecurityEvent) {
        tracing::warn!(
            target: "security",
            r#type = event.kind,
            user_id = %event.user_id,
            session_id = %event.session_id,
            ip = %event.ip,
            user_agent = %event.user_agent,
            at = %rfc3339_ms(event.at),
            by = event.by.map(By::as_str),
            "security event"
        );
        self.metrics
            .security_events
            .with_label_values(&[event.kind])
            .inc();
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, kind = event.kind, "could not store a security event");
        }
    }
}
