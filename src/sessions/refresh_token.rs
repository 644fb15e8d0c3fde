//! Refresh tokens that the store never holds: `base64url(v1 | session id |
//! generation | HMAC-SHA256)`. The MAC key is derived from a configured token
//! key, so the current token of a session can be re-derived (the grace
//! window answers with it) while a stolen database yields nothing usable.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::auth::keys::TokenKey;
use crate::auth::sign::random_b64;

const VERSION: u8 = 1;
pub const SESSION_ID_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
const RAW_LEN: usize = 1 + SESSION_ID_BYTES + 8 + MAC_BYTES;
const DOMAIN: &[u8] = b"sessiongate refresh token v1";

/// A refresh token whose MAC verified against one of the configured keys.
#[derive(Debug, PartialEq, Eq)]
pub struct Presented {
    pub session_id: String,
    pub generation: u64,
}

fn mac_input(sid: &[u8], generation: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + SESSION_ID_BYTES + 8);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(sid);
    m.extend_from_slice(&generation.to_be_bytes());
    m
}

/// The token for `generation` of session `session_id` (base64url of 16 bytes), MACed by `key`.
pub fn issue(key: &TokenKey, session_id: &str, generation: u64) -> Option<String> {
    let sid = B64
        .decode(session_id)
        .ok()
        .filter(|b| b.len() == SESSION_ID_BYTES)?;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key.refresh_mac_key()),
        &mac_input(&sid, generation),
    );
    let mut raw = Vec::with_capacity(RAW_LEN);
    raw.push(VERSION);
    raw.extend_from_slice(&sid);
    raw.extend_from_slice(&generation.to_be_bytes());
    raw.extend_from_slice(tag.as_ref());
    Some(B64.encode(raw))
}

/// Checks shape and MAC (constant time) against every configured key.
/// `None` for anything not issued by us: the caller answers `invalid_refresh_token`.
pub fn verify<'k>(token: &str, keys: impl IntoIterator<Item = &'k TokenKey>) -> Option<Presented> {
    if token.len() > 128 {
        return None;
    }
    let raw = B64.decode(token.trim_end_matches('=')).ok()?;
    if raw.len() != RAW_LEN || raw[0] != VERSION {
        return None;
    }
    let sid = &raw[1..1 + SESSION_ID_BYTES];
    let generation = u64::from_be_bytes(
        raw[1 + SESSION_ID_BYTES..1 + SESSION_ID_BYTES + 8]
            .try_into()
            .ok()?,
    );
    let tag = &raw[RAW_LEN - MAC_BYTES..];
    let msg = mac_input(sid, generation);
    keys.into_iter()
        .any(|k| {
            hmac::verify(
                &hmac::Key::new(hmac::HMAC_SHA256, k.refresh_mac_key()),
                &msg,
                tag,
            )
            .is_ok()
        })
        .then(|| Presented {
            session_id: B64.encode(sid),
            generation,
        })
}

/// A new random session id: 128 bits, base64url (22 characters).
pub fn new_session_id() -> String {
    random_b64::<SESSION_ID_BYTES>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{generate, Alg};

    fn key(kid: &str) -> TokenKey {
        TokenKey::from_pem(kid, Alg::EdDSA, generate(Alg::EdDSA).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_and_names_its_session_and_generation() {
        let k = key("k1");
        let sid = new_session_id();
        let t = issue(&k, &sid, 7).unwrap();
        assert!(B64.decode(&t).unwrap().len() >= 32, "at least 256 bits");
        assert_eq!(
            verify(&t, [&k]),
            Some(Presented {
                session_id: sid,
                generation: 7
            })
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let (k, other) = (key("k1"), key("k2"));
        let t = issue(&k, &new_session_id(), 0).unwrap();
        assert_eq!(verify(&t, [&other]), None);
        let mut raw = B64.decode(&t).unwrap();
        raw[20] ^= 1; // the generation
        assert_eq!(verify(&B64.encode(&raw), [&k]), None);
        for junk in ["", "abc", "!!!!", &"A".repeat(500)] {
            assert_eq!(verify(junk, [&k]), None);
        }
    }

    #[test]
    fn tokens_of_a_rotated_out_key_still_verify_while_it_is_configured() {
        let (old, new) = (key("old"), key("new"));
        let t = issue(&old, &new_session_id(), 3).unwrap();
        assert!(verify(&t, [&new, &old]).is_some());
    }
}
