//! How sessions and events are laid out in Redis: key names (with the hash
//! tags that keep Redis Cluster working) and the session hash's fields.

use std::collections::HashMap;

use crate::store::{SessionRecord, StoreError};

#[derive(Clone)]
pub(crate) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn session(&self, id: &str) -> String {
        format!("{}{{{id}}}:s", self.prefix)
    }
    /// User ids may hold any character (braces too): hex keeps the hash tag intact.
    pub(super) fn user(&self, user_id: &str, what: &str) -> String {
        format!("{}{{u:{}}}:{what}", self.prefix, hex::encode(user_id))
    }
    /// [`Keys::user`] in two parts around the hex user id, for a script that
    /// learns the user id from the data it reads.
    pub(super) fn user_around(&self, what: &str) -> (String, String) {
        (format!("{}{{u:", self.prefix), format!("}}:{what}"))
    }
    pub(super) fn users(&self) -> String {
        format!("{}{{users}}", self.prefix)
    }
    pub(super) fn revoked(&self) -> String {
        format!("{}{{rev}}", self.prefix)
    }
    pub(crate) fn channel(&self) -> String {
        format!("{}{{rev}}:ch", self.prefix)
    }
    /// A rate-limit bucket: the route and the IP's text (IPv6 too: no braces)
    /// make the hash tag, so each bucket is one slot of its own.
    pub(super) fn bucket(&self, route: &str, ip: std::net::IpAddr) -> String {
        format!("{}{{rl:{route}:{ip}}}", self.prefix)
    }
}

/// A session id from a client (the DELETE path) that could break a key's hash tag is unknown.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains(['{', '}'])
}

pub(super) fn record(
    id: &str,
    mut h: HashMap<String, String>,
) -> Result<SessionRecord, StoreError> {
    let mut take = |k: &str| h.remove(k).unwrap_or_default();
    let num = |v: String, k: &str| {
        v.parse::<i64>()
            .map_err(|_| StoreError::Invalid(format!("redis: session {id} has a bad `{k}`")))
    };
    let revoked_at = take("revoked_at");
    Ok(SessionRecord {
        id: id.to_owned(),
        user_id: take("user_id"),
        claims: take("claims"),
        created_at: num(take("created_at"), "created_at")?,
        last_active_at: num(take("last_active_at"), "last_active_at")?,
        ip: take("ip"),
        user_agent: take("user_agent"),
        generation: num(take("generation"), "generation")? as u64,
        kid: take("kid"),
        rotated_at: num(take("rotated_at"), "rotated_at")?,
        revoked_at: (!revoked_at.is_empty())
            .then(|| num(revoked_at, "revoked_at"))
            .transpose()?,
    })
}

pub(super) fn fields(s: &SessionRecord) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("user_id", s.user_id.clone()),
        ("claims", s.claims.clone()),
        ("created_at", s.created_at.to_string()),
        ("last_active_at", s.last_active_at.to_string()),
        ("ip", s.ip.clone()),
        ("user_agent", s.user_agent.clone()),
        ("generation", s.generation.to_string()),
        ("kid", s.kid.clone()),
        ("rotated_at", s.rotated_at.to_string()),
    ];
    if let Some(at) = s.revoked_at {
        f.push(("revoked_at", at.to_string()));
    }
    f
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredEvent {
    pub(super) kind: String,
    pub(super) session_id: String,
    pub(super) ip: String,
    pub(super) user_agent: String,
    /// Optional details are left out when absent, so older members still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scope: Option<String>,
}

/// An event set member: `<id> NUL <json>`. Members written before events had
/// ids are `<16-digit sequence><json>`: the sequence serves as their id.
pub(super) fn event_member(id: &str, e: &StoredEvent) -> Result<String, StoreError> {
    if id.is_empty() || id.contains('\0') {
        return Err(StoreError::Invalid(
            "redis: an event id may not be empty or hold NUL".into(),
        ));
    }
    let json = serde_json::to_string(e).map_err(|e| StoreError::io("event encoding", e))?;
    Ok(format!("{id}\0{json}"))
}

/// (id, event) of a member; `None` for one that does not parse.
pub(super) fn read_member(member: &str) -> Option<(&str, StoredEvent)> {
    let (id, json) = match member.split_once('\0') {
        Some(parts) => parts,
        None => (member.get(..16)?, member.get(16..)?),
    };
    Some((id, serde_json::from_str(json).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_key_in_two_parts_joins_to_the_user_key() {
        let keys = Keys {
            prefix: "p:".into(),
        };
        let (head, tail) = keys.user_around("active");
        for user in ["alice", "{odd}", "用户-ü", ""] {
            assert_eq!(
                format!("{head}{}{tail}", hex::encode(user)),
                keys.user(user, "active")
            );
        }
    }
}
