//! Revocation requested by the upstream (SPEC 10): the legacy application
//! sets `upstream.revoke_header` on its response to an authenticated
//! request, and sessiongate ends the sessions before the response goes on.

use super::*;

impl Sessions {
    /// Ends `scope`'s sessions of the caller `who`: the store first (a
    /// revocation that is not written is not done), then this replica's
    /// list and the broadcast; one `upstream_revoke` event. The number of
    /// sessions ended.
    pub async fn upstream_revoke(
        &self,
        who: &Verified,
        scope: Scope,
        client: &Client,
    ) -> Result<usize, ApiError> {
        let now = unix_now_ms();
        let ids = match scope {
            Scope::Current => {
                // Already ended, or cleaned up: its tokens still stop.
                let changed = self
                    .revoker
                    .revoke(&who.sid, Reason::Upstream, now)
                    .await
                    .map_err(unavailable)?;
                if changed {
                    vec![who.sid.clone()]
                } else {
                    Vec::new()
                }
            }
            Scope::Others | Scope::All => {
                let except = (scope == Scope::Others).then_some(who.sid.as_str());
                self.revoker
                    .revoke_user(&who.sub, except, Some(&who.sid), Reason::Upstream, now)
                    .await
                    .map_err(unavailable)?
            }
        };
        self.events
            .record(SecurityEvent {
                id: events::new_id(),
                kind: events::UPSTREAM_REVOKE,
                user_id: who.sub.clone(),
                session_id: who.sid.clone(),
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
                at: now,
                by: Some(By::Upstream),
                reason: None,
                scope: Some(scope),
            })
            .await;
        Ok(ids.len())
    }
}
