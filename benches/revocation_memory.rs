//! Memory of the in-memory revocation list at 1,000,000 revoked sessions,
//! with the same allocator as the binary. `cargo bench --bench revocation_memory`
//! (BENCH_ENTRIES overrides the count).

use std::time::{Duration, Instant};

use sessiongate::revocation::RevocationList;
use sessiongate::sessions::refresh_token::new_session_id;
use sessiongate::time::unix_now;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let n: u64 = std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let ids: Vec<String> = (0..n).map(|_| new_session_id()).collect();
    let before = rss_mib();
    let list = RevocationList::new(n, Duration::from_secs(930));
    let t = Instant::now();
    let now = unix_now();
    for id in &ids {
        list.insert(id, now);
    }
    let insert = t.elapsed();
    let entries = list.len();
    let t = Instant::now();
    let mut hits = 0u64;
    for id in &ids {
        hits += u64::from(list.is_revoked(id));
    }
    let lookup = t.elapsed();
    let after = rss_mib();
    println!(
        "revocation_memory: {entries} entries, RSS +{:.1} MiB for the list (process {after:.1} MiB incl. {:.1} MiB of test ids), \
         insert {:.0} ns/entry, lookup {:.0} ns, {hits} hits",
        after - before,
        ids.len() as f64 * 46.0 / 1_048_576.0,
        insert.as_nanos() as f64 / n as f64,
        lookup.as_nanos() as f64 / n as f64,
    );
}
