//! Security events (SPEC 8): each is one JSON log line with `"target": "security"`,
//! a stored row kept for `security_events.retain`, a metric, and with a
//! webhook configured a POST (SPEC 11).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::metrics::Metrics;
use crate::store::{By, Scope, SecurityEvent, SessionStore};
use crate::time::rfc3339_ms;

pub mod webhook;

use webhook::Webhook;

pub use crate::names::event::*;

/// A new event id: 128 random bits, base64url (22 characters, like session ids).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    B64.encode(b)
}

pub struct Events {
    store: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
    webhook: Option<Arc<Webhook>>,
}

impl Events {
    pub fn new(store: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> Self {
        Events {
            store,
            metrics,
            webhook: None,
        }
    }

    /// Also sends each event to `webhook` (SPEC 11).
    pub fn with_webhook(mut self, webhook: Option<Arc<Webhook>>) -> Self {
        self.webhook = webhook;
        self
    }

    /// Logs, counts and stores `event`. The log line and metric never wait on
    /// the store; a failed write is logged (the event itself is already on record in the log).
    pub async fn record(&self, event: SecurityEvent) {
        tracing::warn!(
            target: "security",
            id = %event.id,
            r#type = event.kind,
            user_id = %event.user_id,
            session_id = %event.session_id,
            ip = %event.ip,
            user_agent = %event.user_agent,
            at = %rfc3339_ms(event.at),
            by = event.by.map(By::as_str),
            reason = event.reason.as_deref(),
            scope = event.scope.map(Scope::as_str),
            "security event"
        );
        self.metrics
            .security_events
            .with_label_values(&[event.kind])
            .inc();
        if let Some(hook) = &self.webhook {
            hook.offer(&event);
        }
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, kind = event.kind, "could not store a security event");
        }
    }
}
