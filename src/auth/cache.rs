//! The verified-token cache, bounded in bytes: each entry is weighed by what
//! it holds (the token text, the verified claims and the header values made
//! from them), and the cache keeps the total within
//! `tokens.verified_cache_entries` x [`ENTRY_BYTES`]. Weighing runs on insert
//! only; a cache hit costs what it did before.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::verify::Verified;
use crate::time::unix_now;

/// The size the budget allows per configured entry (2.5 KiB). A token
/// sessiongate issues with [`MAX_CLAIMS_BYTES`] of claims, a subject of up to
/// 128 bytes and an EdDSA or ES256 key weighs less than this; bigger ones
/// (RS256 signatures, longer subjects) are weighed as they are, so fewer fit.
pub const ENTRY_BYTES: u64 = 2560;

/// The largest claims header login accepts, so that tokens fit [`ENTRY_BYTES`].
pub const MAX_CLAIMS_BYTES: usize = 512;

/// What moka and the `Arc` add to an entry besides the data weighed below:
/// hash-table slot, deque and timer-wheel nodes, entry metadata (measured
/// against moka 0.12 as roughly this; an estimate, not an exact figure).
const ENTRY_OVERHEAD: usize = 160;

/// Keyed by the token's bytes, hashed with foldhash (seeded at random per
/// process) rather than SipHash: a lookup hashes a ~300-byte token on every
/// request, and SipHash's flooding defence is not needed here, since only
/// tokens whose signature verified are ever inserted, and their bytes are
/// not the client's to choose.
pub type TokenCache = Cache<Box<[u8]>, Arc<Verified>, foldhash::fast::RandomState>;

/// The byte budget for `entries` configured entries; `None` for 0 (no cache).
pub fn budget(entries: u64) -> Option<u64> {
    (entries > 0).then(|| entries.saturating_mul(ENTRY_BYTES))
}

/// The bytes one entry keeps alive.
pub fn weigh(token: &[u8], v: &Verified) -> u32 {
    let bytes = ENTRY_OVERHEAD
        + token.len()
        + std::mem::size_of::<Verified>()
        + v.sub.capacity()
        + v.sid.capacity()
        + v.user_header.len()
        + v.session_header.len()
        + v.claims_header.len();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// moka's weigher signature: the key type is `Box<[u8]>`.
#[allow(clippy::borrowed_box)]
fn weigh_entry(token: &Box<[u8]>, v: &Arc<Verified>) -> u32 {
    weigh(token, v)
}

struct UntilExpiry {
    leeway: i64,
}

impl moka::Expiry<Box<[u8]>, Arc<Verified>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<[u8]>,
        value: &Arc<Verified>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.exp + self.leeway - unix_now();
        Some(Duration::from_secs(left.max(0) as u64))
    }
}

/// The cache for `entries` configured entries (`None` for 0): an entry is
/// dropped at its token's `exp` + `leeway`, or earlier to stay in budget.
pub fn build(entries: u64, leeway: i64) -> Option<TokenCache> {
    budget(entries).map(|bytes| {
        Cache::builder()
            .max_capacity(bytes)
            .weigher(weigh_entry)
            .expire_after(UntilExpiry { leeway })
            .build_with_hasher(foldhash::fast::RandomState::default())
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn verified(sub: &str, claims: &str) -> Verified {
        Verified {
            sub: sub.to_owned(),
            sid: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            iat: unix_now(),
            exp: unix_now() + 900,
            user_header: HeaderValue::from_str(sub).unwrap(),
            session_header: HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA"),
            claims_header: HeaderValue::from_str(claims).unwrap(),
            sid_key: crate::revocation::session_key("AAAAAAAAAAAAAAAAAAAAAA"),
        }
    }

    /// A token as login issues it: header, claims with `ext`, EdDSA signature.
    fn token_text(sub: &str, claims: &str) -> String {
        let payload = format!(
            r#"{{"iss":"sessiongate","aud":"upstream","sub":"{sub}","sid":"AAAAAAAAAAAAAAAAAAAAAA","iat":1800000000,"exp":1800000900,"jti":"AAAAAAAAAAAAAAAAAAAAAA","ext":{claims}}}"#
        );
        let b64 = |n: usize| "A".repeat(n.div_ceil(3) * 4);
        format!("{}.{}.{}", b64(40), b64(payload.len()), b64(64))
    }

    fn claims_of(bytes: usize) -> String {
        let filler = bytes - r#"{"blob":""}"#.len();
        format!(r#"{{"blob":"{}"}}"#, "x".repeat(filler))
    }

    #[test]
    fn a_token_with_the_largest_accepted_claims_fits_the_assumed_entry_size() {
        let (sub, claims) = ("s".repeat(128), claims_of(MAX_CLAIMS_BYTES));
        let w = weigh(
            token_text(&sub, &claims).as_bytes(),
            &verified(&sub, &claims),
        );
        assert!(u64::from(w) <= ENTRY_BYTES, "{w} bytes");
        // And the old 4 KiB claims would not have: the weight follows the size.
        let big = claims_of(4096);
        let w = weigh(token_text(&sub, &big).as_bytes(), &verified(&sub, &big));
        assert!(u64::from(w) > 4 * ENTRY_BYTES, "{w} bytes");
    }

    #[test]
    fn large_entries_never_take_the_cache_past_its_byte_budget() {
        let entries = 200;
        let cache = build(entries, 30).unwrap();
        let budget = budget(entries).unwrap();
        let claims = claims_of(4096);
        let mut one = 0;
        for i in 0..2_000 {
            let sub = format!("user-{i}");
            let token = token_text(&sub, &claims) + &i.to_string();
            let v = Arc::new(verified(&sub, &claims));
            one = weigh(token.as_bytes(), &v);
            cache.insert(token.into_bytes().into(), v);
        }
        cache.run_pending_tasks();
        assert!(
            cache.weighted_size() <= budget,
            "{} > {budget}",
            cache.weighted_size()
        );
        // Full, not empty: it holds about as many of these as the budget allows.
        assert!(cache.entry_count() >= budget / u64::from(one) / 2);
        assert!(cache.entry_count() < entries, "{}", cache.entry_count());
    }

    #[test]
    fn zero_entries_means_no_cache() {
        assert!(build(0, 30).is_none());
        assert_eq!(budget(0), None);
        assert_eq!(budget(100_000), Some(100_000 * ENTRY_BYTES));
    }
}
