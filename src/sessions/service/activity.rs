//! The caller's own security events, "recent security activity" (SPEC 4.8).

use super::*;
use crate::sessions::cursor::{self, Listing};
use crate::store::Position;

/// One event as its user sees it: no token material, no operator details.
#[derive(Serialize, Debug)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: String,
    pub session_id: String,
    pub ip: String,
    pub user_agent: String,
    /// The event concerns the session of the token that asked.
    pub current_session: bool,
    /// Which sessions the upstream ended (`upstream_revoke` only, SPEC 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
}

/// One page of GET /v1/auth/security-events: `next` continues it, `None` on the last page.
#[derive(Serialize, Debug)]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub next: Option<String>,
}

impl Sessions {
    /// The position a `before` cursor of `listing` names; 400 for anything we did not issue to `user_id`.
    pub(super) fn open_cursor(
        &self,
        before: Option<&str>,
        listing: Listing,
        user_id: &str,
    ) -> Result<Option<Position>, ApiError> {
        before
            .map(|c| {
                cursor::open(c, self.keys.iter().map(|k| k.as_ref()), listing, user_id).ok_or_else(
                    || {
                        ApiError::InvalidRequest(
                            "`before` must be the `next` value of a previous page.".into(),
                        )
                    },
                )
            })
            .transpose()
    }

    /// GET /v1/auth/security-events: up to `limit` of the caller's events after the `before` cursor.
    pub async fn security_events(
        &self,
        who: &Verified,
        limit: usize,
        before: Option<&str>,
    ) -> Result<EventPage, ApiError> {
        let after = self.open_cursor(before, Listing::SecurityEvents, &who.sub)?;
        let limit = limit.max(1);
        // One more than asked tells whether another page follows.
        let mut rows = self
            .timed(
                "events",
                self.store.events_page(&who.sub, after.as_ref(), limit + 1),
            )
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| {
                let at = Position::of_event(last);
                cursor::issue(self.signing_key(), Listing::SecurityEvents, &who.sub, &at)
            })
        } else {
            None
        };
        let events = rows
            .into_iter()
            .map(|e| EventView {
                current_session: e.session_id == who.sid,
                at: rfc3339_ms(e.at),
                id: e.id,
                kind: e.kind,
                session_id: e.session_id,
                ip: e.ip,
                user_agent: e.user_agent,
                scope: e.scope.map(Scope::as_str),
            })
            .collect();
        Ok(EventPage { events, next })
    }
}
