//! Two real sidecars on a real three-master Redis Cluster (issue 17 item 2):
//! login, refresh and revoke across replicas, revocations on every replica
//! within 1 s, and a node restart survived.
//!
//! Revocations travel by classic (not sharded) pub/sub: on a Cluster a
//! PUBLISH reaches the subscribers of every node, so a replica may subscribe
//! through whichever node the client picks, and the channel needs no slot of
//! its own. Sharded pub/sub (SPUBLISH) would confine it to the shard that owns
//! `P{rev}:ch`, saving cluster-bus traffic that one message per revocation does
//! not make worth a second code path.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::redis_server::Cluster3;
use crate::common::*;

/// Propagation bound of SPEC 5.
const PROPAGATION: Duration = Duration::from_secs(1);

fn on_cluster(cluster: &Cluster3, extra: Value) -> Value {
    let mut v = json!({
        "store": {"backend": "redis", "redis": {"url": cluster.urls(), "key_prefix": "cl:"}},
    });
    yaml::deep_merge(&mut v, extra);
    v
}

/// The node that owns `key`'s slot: it answers `EXISTS`, the others redirect (MOVED).
fn owner(cluster: &Cluster3, key: &str) -> u16 {
    cluster
        .nodes
        .iter()
        .find(|n| n.command(&["EXISTS", key]).starts_with(':'))
        .expect("a node owns every slot")
        .port
}

#[test]
fn sessions_move_between_replicas_and_revocations_reach_every_replica_within_1s() {
    let (up, cluster) = (Upstream::start(), Cluster3::start());
    let rs = replicas(&up, on_cluster(&cluster, json!({})), 2);
    // Enough sessions (random ids, so random slots) that they land on every node.
    let mut tokens = Vec::new();
    for i in 0..9 {
        let t = rs[i % 2].login(["alice", "bob", "{carol}"][i % 3]);
        let r = rs[(i + 1) % 2].refresh(&s(&t, "refresh_token"));
        assert_eq!(r.status, 200, "{}", r.describe());
        tokens.push(r.json());
    }
    let mut nodes_used = 0;
    for n in &cluster.nodes {
        let size = n.command(&["DBSIZE"]);
        if size.trim() != ":0" {
            nodes_used += 1;
        }
    }
    assert_eq!(
        nodes_used, 3,
        "the test's keys did not spread over the nodes"
    );
    // A reused refresh token is caught whichever replica sees it.
    let t = rs[0].login("alice");
    let first = s(&t, "refresh_token");
    assert_eq!(rs[1].refresh(&first).status, 200);
    thread::sleep(Duration::from_millis(10));
    let r = rs[0].refresh(&first);
    assert!(
        r.status == 200 || r.status == 401,
        "grace or reuse, nothing else: {}",
        r.describe()
    );
    for t in &tokens {
        let access = s(t, "access_token");
        assert_eq!(rs[0].get(PRIVATE, Some(&access)).status, 200);
        let started = Instant::now();
        let out = rs[1].send(Request::post("/v1/auth/logout").bearer(&access));
        assert_eq!(out.status, 204, "{}", out.describe());
        let took = time_until_revoked(&rs[0], &access, started);
        assert!(took < PROPAGATION, "revocation took {took:?}");
    }
}

#[test]
fn a_restarted_node_is_rejoined_and_revocations_flow_again() {
    let (up, mut cluster) = (Upstream::start(), Cluster3::start());
    let rs = replicas(
        &up,
        on_cluster(
            &cluster,
            json!({"revocation": {"max_staleness": "30s", "resync_interval": "1s"}}),
        ),
        2,
    );
    let before = rs[0].login("alice");
    // The node holding the revocation log and its channel's slot: the one that matters most.
    let port = owner(&cluster, "cl:{rev}");
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.port == port)
        .expect("the owner is a node");

    cluster.nodes[i].stop();
    // Past the cluster's node timeout (2 s): the others mark it failed.
    thread::sleep(Duration::from_millis(2500));
    // Tokens are still checked from memory; store routes fail closed, quickly.
    let access = s(&before, "access_token");
    assert_eq!(rs[1].get(PRIVATE, Some(&access)).status, 200);
    let started = Instant::now();
    let r = rs[1].send(Request::post("/v1/auth/logout").bearer(&access));
    assert!(
        r.status == 503 || r.status == 204,
        "a revoke while a node is down: {}",
        r.describe()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a dead node must not hang requests"
    );
    let revoked_during_outage = r.status == 204;

    cluster.nodes[i].restart();
    cluster.wait_ok();
    // Every replica serves the store again by itself (no restart).
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let r = rs[1].login_response("bob", "pw");
        if r.status == 200 {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "the store never came back: {}",
            r.describe()
        );
        thread::sleep(Duration::from_millis(100));
    };
    // The session from before the restart survived it (the node's data is append-only).
    if !revoked_during_outage {
        let refresh = s(&before, "refresh_token");
        let r = past_dead_connections(|| rs[0].refresh(&refresh));
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    // Broadcasts flow again within the bound, both ways.
    for (by, on) in [(0, 1), (1, 0)] {
        let t = if by == 1 {
            after.clone()
        } else {
            past_dead_connections(|| rs[0].login_response("{carol}", "pw")).json()
        };
        let access = s(&t, "access_token");
        let deadline = Instant::now() + Duration::from_secs(20);
        while rs[on].get(PRIVATE, Some(&access)).status != 200 {
            assert!(
                Instant::now() < deadline,
                "replica {on} never accepted the token"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        let out =
            past_dead_connections(|| rs[by].send(Request::post("/v1/auth/logout").bearer(&access)));
        assert_eq!(out.status, 204, "{}", out.describe());
        let took = time_until_revoked(&rs[on], &access, started);
        assert!(
            took < PROPAGATION,
            "after the restart a revocation took {took:?}"
        );
    }
}

/// Runs `call` until it answers something else than 503, at most once per
/// worker and then once more. A worker whose connection to the restarted node
/// died while idle learns it on its next call to that node, which fails (503:
/// Redis may or may not have run it, so it is not sent again); its next call
/// reconnects. More 503s than that is a failure.
fn past_dead_connections(call: impl Fn() -> Response) -> Response {
    // `server.threads: 2` in the test config.
    (0..3)
        .map(|_| call())
        .find(|r| r.status != 503)
        .expect("the store stayed unavailable after the node came back")
}
