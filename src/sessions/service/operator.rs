//! The operator API's session actions (SPEC 9): any user's sessions, on the
//! word of the admin token. Revocations go the same way as a user's own
//! (store first, then this replica's list, then the broadcast).

use super::*;

/// An operator's reason for a revocation (SPEC 9): 1-64 of `[a-z0-9_]`.
pub fn valid_reason(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Sessions {
    /// `GET /admin/v1/users/{user_id}/sessions`: 4.4's page, without `current`.
    pub async fn admin_list(
        &self,
        user_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<SessionPage, ApiError> {
        self.list_page(user_id, None, limit, before).await
    }

    /// `POST /admin/v1/users/{user_id}/revoke-all`: how many were revoked.
    pub async fn admin_revoke_all(
        &self,
        user_id: &str,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<usize, ApiError> {
        let now = unix_now_ms();
        let ids = self
            .revoker
            .revoke_user(user_id, None, None, Reason::Admin, now)
            .await
            .map_err(unavailable)?;
        if !ids.is_empty() {
            self.events
                .record(SecurityEvent {
                    id: events::new_id(),
                    kind: events::REVOKE_ALL,
                    user_id: user_id.to_owned(),
                    session_id: String::new(),
                    ip: client.ip.clone(),
                    user_agent: client.user_agent.clone(),
                    at: now,
                    by: Some(By::Admin),
                    reason: reason.map(str::to_owned),
                    scope: None,
                })
                .await;
        }
        Ok(ids.len())
    }

    /// `DELETE /admin/v1/sessions/{id}`: an unknown, ended or expired session is 404.
    pub async fn admin_revoke_one(&self, id: &str, client: &Client) -> Result<(), ApiError> {
        let now = unix_now_ms();
        let live = self
            .timed("get", self.store.get(id))
            .await?
            .filter(|s| s.revoked_at.is_none() && !self.lifetimes.is_expired(s, now));
        let Some(session) = live else {
            return Err(ApiError::NotFound);
        };
        self.revoke_one_session(&session, Reason::Admin, client, now)
            .await
    }
}
