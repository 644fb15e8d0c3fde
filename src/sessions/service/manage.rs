//! The self-service session API: list, revoke one, revoke all, logout
//! (SPEC 4.4-4.7).

use super::*;
use crate::sessions::cursor::{self, Listing};
use crate::store::Position;

impl Sessions {
    /// GET /v1/auth/sessions: up to `limit` sessions after the `before` cursor.
    pub async fn list(
        &self,
        who: &Verified,
        limit: usize,
        before: Option<&str>,
    ) -> Result<SessionPage, ApiError> {
        self.list_page(&who.sub, Some(&who.sid), limit, before)
            .await
    }

    /// A page of `user_id`'s active sessions; `current` marks the caller's own.
    pub(super) async fn list_page(
        &self,
        user_id: &str,
        current: Option<&str>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<SessionPage, ApiError> {
        let after = self.open_cursor(before, Listing::Sessions, user_id)?;
        let (now, limit) = (unix_now_ms(), limit.max(1));
        // One more than asked tells whether another page follows.
        let mut rows = self
            .timed(
                "list",
                self.store
                    .list_active(user_id, now, self.lifetimes, after.as_ref(), limit + 1),
            )
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| {
                let at = Position::of(last);
                cursor::issue(self.signing_key(), Listing::Sessions, user_id, &at)
            })
        } else {
            None
        };
        let sessions = rows
            .into_iter()
            .map(|s| SessionView {
                current: current.map(|sid| s.id == sid),
                created_at: rfc3339_ms(s.created_at),
                last_active_at: rfc3339_ms(s.last_active_at),
                expires_at: rfc3339_ms(self.lifetimes.expires_at(&s)),
                id: s.id,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect();
        Ok(SessionPage { sessions, next })
    }

    /// DELETE /v1/auth/sessions/{id}: someone else's or an unknown session is 404 alike.
    pub async fn revoke_one(
        &self,
        who: &Verified,
        id: &str,
        client: &Client,
    ) -> Result<(), ApiError> {
        let now = unix_now_ms();
        let owned = self.timed("get", self.store.get(id)).await?.filter(|s| {
            s.user_id == who.sub && s.revoked_at.is_none() && !self.lifetimes.is_expired(s, now)
        });
        let Some(session) = owned else {
            if id == who.sid {
                // The caller's own session, ended or no longer in the store:
                // 404 as for any session that is gone, but its tokens (the
                // one this request came with) stop all the same.
                self.revoker
                    .stop_tokens(id, now)
                    .await
                    .map_err(unavailable)?;
            }
            return Err(ApiError::NotFound);
        };
        let reason = if session.id == who.sid {
            Reason::Logout
        } else {
            Reason::User
        };
        self.revoke_one_session(&session, reason, client, now).await
    }

    pub(super) async fn revoke_one_session(
        &self,
        s: &SessionRecord,
        reason: Reason,
        client: &Client,
        now: i64,
    ) -> Result<(), ApiError> {
        let changed = self
            .revoker
            .revoke(&s.id, reason, now)
            .await
            .map_err(unavailable)?;
        if changed {
            let by = Some(match reason {
                Reason::Admin => By::Admin,
                _ => By::User,
            });
            self.event_by(events::SESSION_REVOKED, &s.user_id, &s.id, client, now, by)
                .await;
        }
        Ok(())
    }

    /// POST /v1/auth/sessions/revoke-all.
    pub async fn revoke_all(
        &self,
        who: &Verified,
        keep_current: bool,
        client: &Client,
    ) -> Result<usize, ApiError> {
        let now = unix_now_ms();
        let except = keep_current.then_some(who.sid.as_str());
        let ids = self
            .revoker
            .revoke_user(&who.sub, except, Some(&who.sid), Reason::RevokeAll, now)
            .await
            .map_err(unavailable)?;
        let by = Some(By::User);
        self.event_by(events::REVOKE_ALL, &who.sub, &who.sid, client, now, by)
            .await;
        Ok(ids.len())
    }

    /// POST /v1/auth/logout with an access token.
    pub async fn logout_access(&self, who: &Verified, client: &Client) -> Result<(), ApiError> {
        let now = unix_now_ms();
        match self.timed("get", self.store.get(&who.sid)).await? {
            Some(s) if s.user_id == who.sub => {
                self.revoke_one_session(&s, Reason::Logout, client, now)
                    .await
            }
            _ => {
                // Not in the store (cleaned up): still make sure its tokens stop.
                self.revoker
                    .stop_tokens(&who.sid, now)
                    .await
                    .map_err(unavailable)
            }
        }
    }

    /// POST /v1/auth/logout with a refresh token: any token we issued for the session ends it.
    pub async fn logout_refresh(&self, token: &str, client: &Client) -> Result<(), ApiError> {
        let presented = refresh_token::verify(token, self.keys.iter().map(|k| k.as_ref()))
            .ok_or(ApiError::InvalidRefreshToken)?;
        let now = unix_now_ms();
        match self
            .timed("get", self.store.get(&presented.session_id))
            .await?
        {
            Some(s) => {
                self.revoke_one_session(&s, Reason::Logout, client, now)
                    .await
            }
            // A token we issued (its MAC verified) for a session that is gone
            // (ended and dropped, or lost by the store): ended already, as
            // the caller asks; its last access tokens stop all the same.
            None => self
                .revoker
                .stop_tokens(&presented.session_id, now)
                .await
                .map_err(unavailable),
        }
    }
}
