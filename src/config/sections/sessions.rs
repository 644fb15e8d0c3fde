//! Sections `sessions`, `store` and `revocation`.

use std::path::Path;

use super::{
    resolve, RefreshCookieConfig, RevocationConfig, SameSite, SessionsConfig, StoreConfig,
    MAX_COUNT, SECS,
};
use crate::config::reader::{Node, Problems};

pub(super) fn read_sessions(root: &Node, p: &mut Problems) -> SessionsConfig {
    let n = root.child(
        "sessions",
        &[
            "idle_timeout",
            "absolute_lifetime",
            "reuse_grace",
            "refresh_cookie",
            "cleanup_interval",
            "max_per_user",
        ],
        p,
    );
    let refresh_cookie = n.get("refresh_cookie").map(|_| {
        let c = n.child(
            "refresh_cookie",
            &["name", "path", "secure", "same_site"],
            p,
        );
        let name = c.string("name", "sg_refresh", p);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.add(&c.key_path("name"), "must be letters, digits, _ or -");
        }
        let path = c.string("path", "/v1/auth", p);
        if !path.starts_with('/') || path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
            p.add(&c.key_path("path"), "must be a path starting with /");
        }
        let same_site = match c.string("same_site", "Strict", p).as_str() {
            "Strict" | "strict" => SameSite::Strict,
            "Lax" | "lax" => SameSite::Lax,
            "None" | "none" => SameSite::None,
            _ => {
                p.add(&c.key_path("same_site"), "must be Strict, Lax or None");
                SameSite::Strict
            }
        };
        let secure = c.boolean("secure", true, p);
        if same_site == SameSite::None && !secure {
            p.add(
                &c.key_path("secure"),
                "same_site: None requires secure: true",
            );
        }
        RefreshCookieConfig {
            name,
            path,
            secure,
            same_site,
        }
    });
    let idle_timeout = n.duration("idle_timeout", SECS(7 * 86_400), p);
    let absolute_lifetime = n.duration("absolute_lifetime", SECS(30 * 86_400), p);
    let cleanup_interval = n.duration("cleanup_interval", SECS(600), p);
    for (key, d) in [
        ("idle_timeout", idle_timeout),
        ("absolute_lifetime", absolute_lifetime),
        ("cleanup_interval", cleanup_interval),
    ] {
        if d < SECS(1) {
            p.add(&n.key_path(key), "must be at least 1s");
        }
    }
    SessionsConfig {
        idle_timeout,
        absolute_lifetime,
        reuse_grace: n.duration("reuse_grace", SECS(10), p),
        refresh_cookie,
        cleanup_interval,
        // Validated here (>= 1): a cap of 0 would end every session at its own login.
        max_per_user: n.number("max_per_user", 100, (1, MAX_PER_USER), p) as usize,
    }
}

/// The largest `sessions.max_per_user`: a login beyond the cap reads this many index entries.
const MAX_PER_USER: u64 = 100_000;

pub(super) fn read_store(root: &Node, base: &Path, p: &mut Problems) -> StoreConfig {
    let n = root.child("store", &["backend", "sqlite", "redis"], p);
    let sqlite = n.child("sqlite", &["path"], p);
    let sqlite_path = resolve(base, &sqlite.string("path", "data/sessiongate.db", p));
    match n.string("backend", "sqlite", p).as_str() {
        "sqlite" => {
            // Unknown keys under `redis` are reported all the same (a typo is found
            // now, not on the day of the switch); its values are checked with `backend: redis`.
            n.child("redis", super::redis::KEYS, p);
            StoreConfig::Sqlite { path: sqlite_path }
        }
        "redis" => StoreConfig::Redis(super::redis::read_redis(&n, base, p)),
        other => {
            p.add(
                &n.key_path("backend"),
                format_args!("`{other}`: expected sqlite or redis"),
            );
            StoreConfig::Sqlite { path: sqlite_path }
        }
    }
}

pub(super) fn read_revocation(root: &Node, p: &mut Problems) -> RevocationConfig {
    let n = root.child(
        "revocation",
        &["cache_entries", "resync_interval", "max_staleness"],
        p,
    );
    let resync_interval = n.duration("resync_interval", SECS(30), p);
    if resync_interval < SECS(1) {
        p.add(&n.key_path("resync_interval"), "must be at least 1s");
    }
    let max_staleness = n.duration("max_staleness", SECS(60), p);
    if max_staleness < SECS(2) {
        // The list is re-confirmed every 500ms; a tighter bound would flap.
        p.add(&n.key_path("max_staleness"), "must be at least 2s");
    }
    RevocationConfig {
        cache_entries: n.number("cache_entries", 1_000_000, (1000, MAX_COUNT), p),
        resync_interval,
        max_staleness,
    }
}
