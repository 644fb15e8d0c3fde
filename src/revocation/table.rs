//! A compact, bounded, expiring set of session ids: 16-byte keys and a
//! 4-byte expiry in 16 shards (about 22 bytes per entry, against ~300 for a
//! general-purpose cache). Expired entries are ignored at once and removed by
//! [`Table::sweep`]; when a shard is full, the entry closest to harmless
//! makes room, so a new revocation is always admitted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

const SHARDS: usize = 16;

pub type Key = [u8; 16];

/// Session ids we issue are base64url of 16 random bytes: use the bytes.
/// Any other id (a token minted elsewhere) is hashed into the same space.
pub fn key_of(session_id: &str) -> Key {
    let mut key = [0u8; 16];
    if session_id.len() == 22 && B64.decode_slice(session_id, &mut key).ok() == Some(16) {
        return key;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session_id.as_bytes());
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

pub struct Table {
    shards: Vec<RwLock<HashMap<Key, u32>>>,
    per_shard: usize,
    /// Expiries are stored as seconds after this unix time.
    base: i64,
    /// Unexpired entries pushed out because a shard was full.
    evictions: AtomicU64,
}

impl Table {
    pub fn new(capacity: u64, base: i64) -> Table {
        Table {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            // Random ids spread unevenly over shards: an eighth of slack keeps
            // a list filled to `capacity` from evicting anything.
            per_shard: {
                let even = (capacity as usize).div_ceil(SHARDS);
                (even + even / 8 + 64).max(1)
            },
            base,
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &RwLock<HashMap<Key, u32>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    fn offset(&self, unix: i64) -> u32 {
        (unix - self.base).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Whether `key` is in the set and not expired at unix time `now`.
    pub fn contains(&self, key: &Key, now: i64) -> bool {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        shard
            .get(key)
            .is_some_and(|until| *until > self.offset(now))
    }

    /// Adds `key` until unix time `until` (keeping a later expiry if present).
    pub fn insert(&self, key: Key, until: i64, now: i64) {
        let (until, now) = (self.offset(until), self.offset(now));
        let mut shard = self.shard(&key).write().unwrap_or_else(|p| p.into_inner());
        if !shard.contains_key(&key) && shard.len() >= self.per_shard {
            shard.retain(|_, u| *u > now);
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                    shard.remove(&victim);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let slot = shard.entry(key).or_insert(until);
        *slot = (*slot).max(until);
    }

    /// Drops expired entries; returns how many remain.
    pub fn sweep(&self, now: i64) -> usize {
        let now = self.offset(now);
        self.shards
            .iter()
            .map(|s| {
                let mut s = s.write().unwrap_or_else(|p| p.into_inner());
                s.retain(|_, u| *u > now);
                s.len()
            })
            .sum()
    }

    /// Unexpired entries evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_use_their_bytes_and_others_are_hashed() {
        let id = "AAECAwQFBgcICQoLDA0ODw"; // bytes 0..16
        assert_eq!(key_of(id), core::array::from_fn(|i| i as u8));
        assert_ne!(key_of("user-chosen-sid"), key_of("user-chosen-sid2"));
        assert_eq!(key_of("x"), key_of("x"));
    }

    #[test]
    fn entries_expire_and_are_swept() {
        let t = Table::new(100, 1_000);
        t.insert(key_of("a"), 1_010, 1_000);
        assert!(t.contains(&key_of("a"), 1_009));
        assert!(!t.contains(&key_of("a"), 1_010));
        assert_eq!(t.sweep(1_010), 0);
    }

    #[test]
    fn a_full_table_still_admits_a_new_revocation() {
        let t = Table::new(0, 0); // the smallest table: 64 slots per shard
        let keys: Vec<Key> = (0..2000u32)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            t.insert(*k, 100 + i as i64, 0);
        }
        assert!(t.len() <= 16 * 64);
        let last = keys[1999];
        assert!(t.contains(&last, 1), "the newest revocation is kept");
        // None had expired: every one pushed out is counted.
        assert_eq!(t.evictions(), 2000 - t.len() as u64);
    }

    #[test]
    fn expired_entries_make_room_without_counting_as_evictions() {
        let t = Table::new(0, 0);
        for i in 0..2000u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            // Each expires before the next one arrives.
            t.insert(k, i64::from(i) + 1, i64::from(i) + 1);
        }
        assert_eq!(t.evictions(), 0);
    }

    #[test]
    fn a_later_expiry_wins() {
        let t = Table::new(10, 0);
        t.insert([1; 16], 50, 0);
        t.insert([1; 16], 20, 0);
        assert!(t.contains(&[1; 16], 40));
    }
}
