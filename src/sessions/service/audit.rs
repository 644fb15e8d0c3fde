//! The operator's view of security events (SPEC 9's
//! `GET /admin/v1/security-events` and `sessiongate events`): any user's,
//! filtered by user, type and time, newest first, paged like 4.8.

use super::*;
use crate::sessions::cursor::{self, Listing};
use crate::store::Position;

/// What the operator asked for; every part optional.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub user_id: Option<String>,
    /// One of [`events::KINDS`].
    pub kind: Option<&'static str>,
    /// Unix ms: only events at or after it.
    pub since: Option<i64>,
}

impl EventFilter {
    /// A `type` value: one of the event types, else `None`.
    pub fn parse_kind(s: &str) -> Option<&'static str> {
        events::KINDS.iter().copied().find(|k| *k == s)
    }

    /// A `since` value: an RFC 3339 time (`2026-12-01T08:00:00Z`), as unix ms.
    pub fn parse_since(s: &str) -> Option<i64> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
    }

    /// What a cursor is bound to: a cursor of one query never continues another.
    fn scope(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.user_id.as_deref().unwrap_or("*"),
            self.kind.unwrap_or("*"),
            self.since.map_or_else(|| "*".to_owned(), |s| s.to_string())
        )
    }
}

/// One event as an operator sees it: with `user_id`, `by`, `reason`, `scope`.
#[derive(Serialize, Debug)]
pub struct AuditEventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: String,
    pub user_id: String,
    pub session_id: String,
    pub ip: String,
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
}

#[derive(Serialize, Debug)]
pub struct AuditEventPage {
    pub events: Vec<AuditEventView>,
    pub next: Option<String>,
}

impl Sessions {
    /// Up to `limit` events matching `filter`, after the `before` cursor.
    /// Filters are applied while reading pages of the store's time order, so
    /// a rare type or an old `since` may read many rows (bounded by
    /// `security_events.retain`).
    pub async fn audit_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditEventPage, ApiError> {
        let scope = filter.scope();
        let mut after = self.open_cursor(before, Listing::AuditEvents, &scope)?;
        let limit = limit.max(1);
        let batch = limit.saturating_add(1).clamp(64, 512);
        let mut found: Vec<SecurityEvent> = Vec::new();
        'pages: loop {
            let rows = match &filter.user_id {
                Some(user) => {
                    self.timed(
                        "events",
                        self.store.events_page(user, after.as_ref(), batch),
                    )
                    .await?
                }
                None => {
                    self.timed(
                        "events_all",
                        self.store.all_events_page(after.as_ref(), batch),
                    )
                    .await?
                }
            };
            let exhausted = rows.len() < batch;
            for e in rows {
                after = Some(Position::of_event(&e));
                if filter.since.is_some_and(|s| e.at < s) {
                    break 'pages;
                }
                if filter.kind.is_some_and(|k| e.kind != k) {
                    continue;
                }
                found.push(e);
                if found.len() > limit {
                    break 'pages;
                }
            }
            if exhausted {
                break;
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|last| {
                let at = Position::of_event(last);
                cursor::issue(self.signing_key(), Listing::AuditEvents, &scope, &at)
            })
        } else {
            None
        };
        let events = found
            .into_iter()
            .map(|e| AuditEventView {
                at: rfc3339_ms(e.at),
                id: e.id,
                kind: e.kind,
                user_id: e.user_id,
                session_id: e.session_id,
                ip: e.ip,
                user_agent: e.user_agent,
                by: e.by.map(By::as_str),
                reason: e.reason,
                scope: e.scope.map(Scope::as_str),
            })
            .collect();
        Ok(AuditEventPage { events, next })
    }
}
