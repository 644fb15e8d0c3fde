//! Opaque page cursors (the `next` / `before` of SPEC 4.4 and 4.8):
//! `base64url(v1 | created_at | id | HMAC-SHA256)`, the MAC over the listing's
//! name, the user and the position, so an edited, forged or borrowed cursor is
//! refused (400) instead of steering the query. Keyed like refresh tokens: any
//! replica with the same token keys reads another's cursors.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::auth::keys::TokenKey;
use crate::store::Position;

const VERSION: u8 = 1;
const MAC_BYTES: usize = 32;
/// Longer ids are not ours (session ids are 22 characters).
const MAX_ID_BYTES: usize = 128;
const DOMAIN: &[u8] = b"sessiongate page cursor v1";

/// Which listing a cursor belongs to: one listing's cursor never opens another's.
#[derive(Clone, Copy, Debug)]
pub enum Listing {
    Sessions,
    SecurityEvents,
    /// The operator's events listing; its "user" is the whole filter.
    AuditEvents,
}

impl Listing {
    fn as_str(self) -> &'static str {
        match self {
            Listing::Sessions => "sessions",
            Listing::SecurityEvents => "security_events",
            Listing::AuditEvents => "audit_events",
        }
    }
}

fn mac_input(listing: Listing, user_id: &str, created_at: i64, id: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 32 + user_id.len() + id.len());
    m.extend_from_slice(DOMAIN);
    // Length prefixes keep (user, id) pairs from running into each other.
    for part in [listing.as_str().as_bytes(), user_id.as_bytes()] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    m.extend_from_slice(&created_at.to_be_bytes());
    m.extend_from_slice(id);
    m
}

fn key(k: &TokenKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, k.refresh_mac_key())
}

/// The cursor that continues `listing` of `user_id` after `p`.
pub fn issue(k: &TokenKey, listing: Listing, user_id: &str, p: &Position) -> String {
    let tag = hmac::sign(
        &key(k),
        &mac_input(listing, user_id, p.created_at, p.id.as_bytes()),
    );
    let mut raw = Vec::with_capacity(1 + 8 + p.id.len() + MAC_BYTES);
    raw.push(VERSION);
    raw.extend_from_slice(&p.created_at.to_be_bytes());
    raw.extend_from_slice(p.id.as_bytes());
    raw.extend_from_slice(tag.as_ref());
    B64.encode(raw)
}

/// The position in `cursor` if one of `keys` issued it for this listing and
/// user; `None` for anything else (the caller answers 400 `invalid_request`).
pub fn open<'k>(
    cursor: &str,
    keys: impl IntoIterator<Item = &'k TokenKey>,
    listing: Listing,
    user_id: &str,
) -> Option<Position> {
    if cursor.len() > (1 + 8 + MAX_ID_BYTES + MAC_BYTES) * 4 / 3 + 4 {
        return None;
    }
    let raw = B64.decode(cursor).ok()?;
    if raw.len() < 1 + 8 + 1 + MAC_BYTES || raw[0] != VERSION {
        return None;
    }
    let created_at = i64::from_be_bytes(raw[1..9].try_into().ok()?);
    let (id, tag) = raw[9..].split_at(raw.len() - 9 - MAC_BYTES);
    let msg = mac_input(listing, user_id, created_at, id);
    let genuine = keys
        .into_iter()
        .any(|k| hmac::verify(&key(k), &msg, tag).is_ok());
    if !genuine {
        return None;
    }
    Some(Position {
        created_at,
        id: String::from_utf8(id.to_vec()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(secret: &str) -> TokenKey {
        TokenKey::from_secret("k1", secret.as_bytes()).unwrap()
    }

    #[test]
    fn a_cursor_opens_only_for_its_user_listing_and_keys() {
        let (a, b) = (
            k("0123456789abcdef0123456789abcdef"),
            k("fedcba9876543210fedcba9876543210"),
        );
        let p = Position {
            created_at: 1_800_000_000_123,
            id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        };
        let c = issue(&a, Listing::Sessions, "alice", &p);
        assert_eq!(open(&c, [&a], Listing::Sessions, "alice"), Some(p));
        assert_eq!(open(&c, [&b], Listing::Sessions, "alice"), None);
        assert_eq!(open(&c, [&a], Listing::Sessions, "bob"), None);
        assert!(open(&c, [&b, &a], Listing::Sessions, "alice").is_some());
        assert_eq!(open(&c, [&a], Listing::SecurityEvents, "alice"), None);
        // Any one byte changed: refused.
        let raw = B64.decode(&c).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 1;
            assert_eq!(open(&B64.encode(t), [&a], Listing::Sessions, "alice"), None);
        }
        for junk in ["", "x", "!!!!", &"A".repeat(4000), &c[..c.len() - 1]] {
            assert_eq!(open(junk, [&a], Listing::Sessions, "alice"), None);
        }
    }
}
