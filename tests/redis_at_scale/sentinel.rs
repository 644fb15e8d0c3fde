//! A real Sentinel failover (issue 17 item 3): one master, one replica and
//! three sentinels on loopback, two sidecars configured with
//! `store.redis.sentinel`. The master is killed: requests during the failover
//! succeed or get 503 `store_unavailable`, never a wrong answer; sessions and
//! revocations survive; service resumes on the promoted replica without a
//! restart, broadcasts included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::redis_server::{SentinelSet, MASTER_NAME};
use crate::common::*;

fn on_sentinels(set: &SentinelSet) -> Value {
    json!({
        "store": {"backend": "redis", "redis": {
            "sentinel": {"master_name": MASTER_NAME, "urls": set.urls()},
            "key_prefix": "sen:",
        }},
        // Longer than a failover: tokens stay checkable from memory meanwhile.
        "revocation": {"max_staleness": "30s", "resync_interval": "1s"},
    })
}

#[test]
fn a_master_failover_keeps_sessions_and_revocations_and_needs_no_restart() {
    let (up, mut set) = (Upstream::start(), SentinelSet::start());
    let rs = Arc::new(replicas(&up, on_sentinels(&set), 2));

    // Before: a live session, and a revoked one.
    let alice = rs[0].login("alice");
    let r = rs[1].refresh(&s(&alice, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    let alice = r.json();
    let bob = rs[0].login("bob");
    let bob_access = s(&bob, "access_token");
    let out = rs[0].send(Request::post("/v1/auth/logout").bearer(&bob_access));
    assert_eq!(out.status, 204, "{}", out.describe());
    assert_error(
        &rs[1].get(PRIVATE, Some(&bob_access)),
        401,
        "session_revoked",
    );
    // Asynchronous replication: what the master acknowledged is on the replica.
    set.wait_replicated();
    let old_master = set.master.port;

    // Traffic through the failover, checked answer by answer.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (rs, stop) = (rs.clone(), stop.clone());
        let (alice_access, bob_access) = (s(&alice, "access_token"), bob_access.clone());
        thread::spawn(move || {
            let (mut ok, mut unavailable) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                for sc in rs.iter() {
                    // The revoked session is refused from memory, whatever Redis does.
                    assert_error(&sc.get(PRIVATE, Some(&bob_access)), 401, "session_revoked");
                    assert_eq!(sc.get(PRIVATE, Some(&alice_access)).status, 200);
                    let r = sc.get("/v1/auth/sessions", Some(&alice_access));
                    match r.status {
                        200 => ok += 1,
                        503 => {
                            assert_error(&r, 503, "store_unavailable");
                            unavailable += 1;
                        }
                        _ => panic!("during the failover: {}", r.describe()),
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            (ok, unavailable)
        })
    };

    set.master.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while set.master_port() != Some(set.replica.port) {
        assert!(Instant::now() < deadline, "the sentinels never failed over");
        thread::sleep(Duration::from_millis(100));
    }
    // Service resumes by itself: the sessions list answers again on both replicas.
    let deadline = Instant::now() + Duration::from_secs(15);
    for sc in rs.iter() {
        while sc
            .get("/v1/auth/sessions", Some(&s(&alice, "access_token")))
            .status
            != 200
        {
            assert!(Instant::now() < deadline, "never resumed\n{}", sc.logs());
            thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, unavailable) = traffic.join().expect("no wrong answer during the failover");
    assert!(unavailable > 0, "the failover was not seen ({ok} ok)");
    assert_ne!(set.master_port(), Some(old_master));

    // The data survived: alice refreshes, bob stays revoked.
    let r = rs[1].refresh(&s(&alice, "refresh_token"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_error(
        &rs[0].refresh(&s(&bob, "refresh_token")),
        401,
        "session_revoked",
    );
    // Logins and broadcasts work on the new master, both ways.
    for (by, on) in [(0, 1), (1, 0)] {
        let t = rs[by].login("{carol}");
        let access = s(&t, "access_token");
        assert_eq!(rs[on].get(PRIVATE, Some(&access)).status, 200);
        let started = Instant::now();
        let out = rs[by].send(Request::post("/v1/auth/logout").bearer(&access));
        assert_eq!(out.status, 204, "{}", out.describe());
        let took = time_until_revoked(&rs[on], &access, started);
        assert!(
            took < Duration::from_secs(1),
            "after the failover a revocation took {took:?}"
        );
    }
}
