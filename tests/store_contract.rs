//! The session-store contract, written once and run against every backend
//! (the way oauth2-proxy's session_store_tests.go does). A backend joins by
//! adding one `store_contract!` line with a function that opens a fresh store.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

mod common;

use common::redis_server::RedisServer;
use sessiongate::store::redis::{RedisStore, Retention};
use sessiongate::store::sqlite::SqliteStore;
use sessiongate::store::{
    Activity, By, Lifetimes, Position, RefreshOutcome, Scope, SecurityEvent, SessionRecord,
    SessionStore,
};

/// A fresh, empty store and whatever must live as long as it (a temp dir, a server).
pub type Fresh = (Arc<dyn SessionStore>, Box<dyn Any + Send>);

const HOUR: i64 = 3_600_000;
const LIFETIMES: Lifetimes = Lifetimes {
    idle_ms: 24 * HOUR,
    absolute_ms: 7 * 24 * HOUR,
};

fn session(id: &str, user: &str, created_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user_id: user.into(),
        claims: r#"{"role":"user"}"#.into(),
        created_at,
        last_active_at: created_at,
        ip: "192.0.2.1".into(),
        user_agent: "contract/1".into(),
        generation: 0,
        kid: "k1".into(),
        rotated_at: 0,
        revoked_at: None,
    }
}

fn activity(at: i64) -> Activity {
    Activity {
        at,
        ip: "198.51.100.9".into(),
        user_agent: "contract/2".into(),
        kid: "k2".into(),
    }
}

fn event(kind: &'static str, user: &str, at: i64) -> SecurityEvent {
    SecurityEvent {
        id: format!("{user}-{at}-{kind}"),
        kind,
        user_id: user.into(),
        session_id: "s".into(),
        ip: "192.0.2.1".into(),
        user_agent: "contract/1".into(),
        at,
        by: None,
        reason: None,
        scope: None,
    }
}

/// Every active session of `user`, page by page (`per_page` each), in listing order.
async fn all_pages(store: &dyn SessionStore, user: &str, per_page: usize) -> Vec<String> {
    let (mut ids, mut after): (Vec<String>, Option<Position>) = (Vec::new(), None);
    loop {
        let page = store
            .list_active(user, NOW, LIFETIMES, after.as_ref(), per_page)
            .await
            .unwrap();
        assert!(page.len() <= per_page, "a page larger than asked");
        ids.extend(page.iter().map(|s| s.id.clone()));
        match page.last() {
            Some(last) if page.len() == per_page => after = Some(Position::of(last)),
            _ => return ids,
        }
    }
}

const NOW: i64 = 1_800_000_000_000;

pub mod contract {
    use super::*;

    pub async fn a_created_session_reads_back_as_written(store: Arc<dyn SessionStore>) {
        let s = session("s1", "alice", NOW);
        store.create(&s).await.unwrap();
        assert_eq!(store.get("s1").await.unwrap(), Some(s));
        assert_eq!(store.get("unknown").await.unwrap(), None);
    }

    pub async fn rotation_moves_the_generation_and_records_the_activity(
        store: Arc<dyn SessionStore>,
    ) {
        let created = session("s1", "alice", NOW);
        store.create(&created).await.unwrap();
        let RefreshOutcome::Rotated { before, after } = store
            .refresh("s1", 0, &activity(NOW + 5), LIFETIMES)
            .await
            .unwrap()
        else {
            panic!("the first rotation must succeed");
        };
        // The row as it was: the service compares its ip and user agent.
        assert_eq!(before, created);
        assert_eq!(after.generation, 1);
        assert_eq!((after.rotated_at, after.last_active_at), (NOW + 5, NOW + 5));
        assert_eq!(
            (
                after.ip.as_str(),
                after.user_agent.as_str(),
                after.kid.as_str()
            ),
            ("198.51.100.9", "contract/2", "k2")
        );
        assert_eq!(store.get("s1").await.unwrap(), Some(after));
    }

    pub async fn rotation_with_a_stale_generation_is_a_conflict(store: Arc<dyn SessionStore>) {
        store.create(&session("s1", "alice", NOW)).await.unwrap();
        assert!(matches!(
            store
                .refresh("s1", 0, &activity(NOW), LIFETIMES)
                .await
                .unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        match store
            .refresh("s1", 0, &activity(NOW + 1), LIFETIMES)
            .await
            .unwrap()
        {
            RefreshOutcome::Unchanged(current) => assert_eq!(current.generation, 1),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            store
                .refresh("nope", 0, &activity(NOW), LIFETIMES)
                .await
                .unwrap(),
            RefreshOutcome::NotFound
        );
    }

    pub async fn a_generation_ahead_of_the_store_writes_nothing(store: Arc<dyn SessionStore>) {
        store.create(&session("s1", "alice", NOW)).await.unwrap();
        match store
            .refresh("s1", 1, &activity(NOW + 1), LIFETIMES)
            .await
            .unwrap()
        {
            RefreshOutcome::Unchanged(current) => assert_eq!(current, session("s1", "alice", NOW)),
            other => panic!("a generation the store never reached rotated: {other:?}"),
        }
        assert_eq!(
            store.get("s1").await.unwrap(),
            Some(session("s1", "alice", NOW))
        );
    }

    /// Expired is `at >= min(created + absolute, last_active + idle)` (Lifetimes::is_expired):
    /// one millisecond before the idle end rotates, at the end nothing is written.
    pub async fn an_expired_session_cannot_rotate(store: Arc<dyn SessionStore>) {
        store.create(&session("idle", "alice", NOW)).await.unwrap();
        let mut old = session("old", "alice", NOW - LIFETIMES.absolute_ms + HOUR);
        old.last_active_at = NOW;
        store.create(&old).await.unwrap();
        let end = NOW + LIFETIMES.idle_ms;
        match store
            .refresh("idle", 0, &activity(end), LIFETIMES)
            .await
            .unwrap()
        {
            RefreshOutcome::Unchanged(r) => assert_eq!(r.generation, 0),
            other => panic!("an idle-expired session rotated: {other:?}"),
        }
        assert!(matches!(
            store
                .refresh("idle", 0, &activity(end - 1), LIFETIMES)
                .await
                .unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        // Active a moment ago, but past its absolute lifetime.
        let end = NOW + HOUR;
        assert!(matches!(
            store
                .refresh("old", 0, &activity(end - 1), LIFETIMES)
                .await
                .unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        match store
            .refresh("old", 1, &activity(end), LIFETIMES)
            .await
            .unwrap()
        {
            RefreshOutcome::Unchanged(r) => assert_eq!(r.generation, 1),
            other => panic!("a session past its absolute lifetime rotated: {other:?}"),
        }
        assert_eq!(store.get("old").await.unwrap().unwrap().generation, 1);
    }

    pub async fn concurrent_rotations_of_one_generation_have_exactly_one_winner(
        store: Arc<dyn SessionStore>,
    ) {
        store.create(&session("s1", "alice", NOW)).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .refresh("s1", 0, &activity(NOW + i), LIFETIMES)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                RefreshOutcome::Rotated { before, after } => {
                    wins += 1;
                    assert_eq!((before.generation, after.generation), (0, 1));
                }
                RefreshOutcome::Unchanged(r) => assert_eq!(r.generation, 1),
                RefreshOutcome::NotFound => panic!("the session vanished"),
            }
        }
        assert_eq!(wins, 1, "exactly one concurrent rotation may succeed");
        assert_eq!(store.get("s1").await.unwrap().unwrap().generation, 1);
    }

    pub async fn a_revoked_session_cannot_rotate(store: Arc<dyn SessionStore>) {
        store.create(&session("s1", "alice", NOW)).await.unwrap();
        assert!(store.revoke("s1", NOW + 1).await.unwrap());
        match store
            .refresh("s1", 0, &activity(NOW + 2), LIFETIMES)
            .await
            .unwrap()
        {
            RefreshOutcome::Unchanged(r) => {
                assert_eq!((r.generation, r.revoked_at), (0, Some(NOW + 1)))
            }
            other => panic!("a revoked session rotated: {other:?}"),
        }
    }

    pub async fn revocation_is_reported_once(store: Arc<dyn SessionStore>) {
        store.create(&session("s1", "alice", NOW)).await.unwrap();
        assert!(store.revoke("s1", NOW + 1).await.unwrap());
        assert!(
            !store.revoke("s1", NOW + 2).await.unwrap(),
            "already revoked"
        );
        assert!(!store.revoke("unknown", NOW).await.unwrap());
        assert_eq!(
            store.get("s1").await.unwrap().unwrap().revoked_at,
            Some(NOW + 1),
            "the first time stays"
        );
    }

    pub async fn revoking_a_user_spares_the_excepted_session_and_other_users(
        store: Arc<dyn SessionStore>,
    ) {
        for (id, user) in [
            ("a1", "alice"),
            ("a2", "alice"),
            ("a3", "alice"),
            ("b1", "bob"),
        ] {
            store.create(&session(id, user, NOW)).await.unwrap();
        }
        store.revoke("a3", NOW).await.unwrap();
        let ids: HashSet<String> = store
            .revoke_user("alice", Some("a2"), NOW + 1)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            ids,
            HashSet::from(["a1".to_string()]),
            "a3 was revoked before, a2 is spared"
        );
        assert_eq!(store.get("a2").await.unwrap().unwrap().revoked_at, None);
        assert_eq!(store.get("b1").await.unwrap().unwrap().revoked_at, None);
        let all = store.revoke_user("alice", None, NOW + 2).await.unwrap();
        assert_eq!(all, vec!["a2".to_string()]);
    }

    pub async fn active_sessions_are_listed_newest_first(store: Arc<dyn SessionStore>) {
        store
            .create(&session("old", "alice", NOW - 3 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("new", "alice", NOW - HOUR))
            .await
            .unwrap();
        store
            .create(&session("revoked", "alice", NOW - 2 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("idle", "alice", NOW - 30 * HOUR))
            .await
            .unwrap();
        store.create(&session("bobs", "bob", NOW)).await.unwrap();
        store.revoke("revoked", NOW).await.unwrap();
        let ids: Vec<String> = store
            .list_active("alice", NOW, LIFETIMES, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["new", "old"]);
    }

    pub async fn pages_walk_every_active_session_once_newest_first(store: Arc<dyn SessionStore>) {
        // Two pairs share a millisecond: the id orders them, on every backend alike.
        for (id, at) in [
            ("s1", NOW - 9),
            ("s2", NOW - 8),
            ("s3b", NOW - 7),
            ("s3a", NOW - 7),
            ("s4", NOW - 6),
            ("s5", NOW - 5),
            ("s6a", NOW - 4),
            ("s6b", NOW - 4),
        ] {
            store.create(&session(id, "alice", at)).await.unwrap();
        }
        store
            .create(&session("idle", "alice", NOW - 30 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("gone", "alice", NOW - 3))
            .await
            .unwrap();
        store.revoke("gone", NOW).await.unwrap();
        store.create(&session("bobs", "bob", NOW)).await.unwrap();
        let newest_first = ["s6b", "s6a", "s5", "s4", "s3b", "s3a", "s2", "s1"];
        for per_page in [1, 2, 3, 8, 100] {
            assert_eq!(
                all_pages(store.as_ref(), "alice", per_page).await,
                newest_first,
                "pages of {per_page}"
            );
        }
        // A page starts strictly after its position, ties included.
        let after = Position {
            created_at: NOW - 7,
            id: "s3b".into(),
        };
        let ids: Vec<String> = store
            .list_active("alice", NOW, LIFETIMES, Some(&after), 2)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["s3a", "s2"]);
    }

    pub async fn the_cap_ends_the_least_recently_active_sessions(store: Arc<dyn SessionStore>) {
        for (i, id) in ["s1", "s2", "s3"].into_iter().enumerate() {
            let revoked = store
                .create_capped(&session(id, "alice", NOW + i as i64), 3, LIFETIMES)
                .await
                .unwrap();
            assert!(revoked.is_empty(), "within the cap: {revoked:?}");
        }
        store
            .create_capped(&session("b1", "bob", NOW), 3, LIFETIMES)
            .await
            .unwrap();
        // s1 is the oldest but was refreshed: s2 is now the least recently active.
        assert!(matches!(
            store
                .refresh("s1", 0, &activity(NOW + 10), LIFETIMES)
                .await
                .unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        let revoked = store
            .create_capped(&session("s4", "alice", NOW + 20), 3, LIFETIMES)
            .await
            .unwrap();
        assert_eq!(revoked, ["s2"]);
        assert_eq!(
            store.get("s2").await.unwrap().unwrap().revoked_at,
            Some(NOW + 20)
        );
        assert_eq!(
            all_pages(store.as_ref(), "alice", 10).await,
            ["s4", "s3", "s1"]
        );
        assert_eq!(
            store.revoked_since(NOW).await.unwrap(),
            [("s2".to_string(), NOW + 20)],
            "on the revocation log like any revocation"
        );
        assert_eq!(all_pages(store.as_ref(), "bob", 10).await, ["b1"]);
        // A cap lowered below what a user has: one login trims them all at once.
        let revoked = store
            .create_capped(&session("s5", "alice", NOW + 30), 1, LIFETIMES)
            .await
            .unwrap();
        assert_eq!(revoked, ["s3", "s1", "s4"]);
        assert_eq!(all_pages(store.as_ref(), "alice", 10).await, ["s5"]);
    }

    pub async fn revoked_and_expired_sessions_do_not_count_toward_the_cap(
        store: Arc<dyn SessionStore>,
    ) {
        store
            .create(&session("idle", "alice", NOW - 30 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("gone", "alice", NOW - 2))
            .await
            .unwrap();
        store.revoke("gone", NOW - 1).await.unwrap();
        for (i, id) in ["s1", "s2"].into_iter().enumerate() {
            let revoked = store
                .create_capped(&session(id, "alice", NOW + i as i64), 2, LIFETIMES)
                .await
                .unwrap();
            assert!(revoked.is_empty(), "{id}: {revoked:?}");
        }
        let revoked = store
            .create_capped(&session("s3", "alice", NOW + 5), 2, LIFETIMES)
            .await
            .unwrap();
        assert_eq!(revoked, ["s1"]);
        assert_eq!(store.get("idle").await.unwrap().unwrap().revoked_at, None);
    }

    pub async fn concurrent_logins_end_within_the_cap(store: Arc<dyn SessionStore>) {
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let s = session(&format!("c{i:02}"), "alice", NOW + i);
                    store.create_capped(&s, 5, LIFETIMES).await.unwrap()
                })
            })
            .collect();
        let mut revoked = Vec::new();
        for t in tasks {
            revoked.extend(t.await.unwrap());
        }
        let live = all_pages(store.as_ref(), "alice", 100).await;
        assert_eq!(live.len(), 5, "{live:?}");
        let distinct: HashSet<&String> = revoked.iter().collect();
        assert_eq!(
            distinct.len(),
            revoked.len(),
            "a session counted twice: {revoked:?}"
        );
        assert_eq!(
            revoked.len(),
            19,
            "every session beyond the cap is reported once"
        );
    }

    pub async fn recent_revocations_can_be_reloaded(store: Arc<dyn SessionStore>) {
        for id in ["s1", "s2", "s3"] {
            store.create(&session(id, "alice", NOW)).await.unwrap();
        }
        store.revoke("s1", NOW - HOUR).await.unwrap();
        store.revoke("s2", NOW).await.unwrap();
        let recent = store.revoked_since(NOW - 1000).await.unwrap();
        assert_eq!(recent, vec![("s2".to_string(), NOW)]);
    }

    pub async fn security_events_are_kept_newest_first(store: Arc<dyn SessionStore>) {
        store
            .record_event(&event("login", "alice", NOW))
            .await
            .unwrap();
        store
            .record_event(&event("new_ip", "alice", NOW + 1))
            .await
            .unwrap();
        store
            .record_event(&event("login", "bob", NOW + 2))
            .await
            .unwrap();
        let kinds: Vec<&str> = store
            .events_for_user("alice", 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["new_ip", "login"]);
        assert_eq!(store.events_for_user("alice", 1).await.unwrap().len(), 1);
    }

    pub async fn event_details_read_back_as_written(store: Arc<dyn SessionStore>) {
        let mut e = event("upstream_revoke", "alice", NOW);
        e.id = "Zm9vYmFyYmF6cXV4cXV1eA".into();
        e.scope = Some(Scope::Others);
        let mut r = event("revoke_all", "alice", NOW + 1);
        (r.by, r.reason) = (Some(By::Admin), Some("password_changed".into()));
        for x in [&e, &r] {
            store.record_event(x).await.unwrap();
        }
        let got = store.events_page("alice", None, 10).await.unwrap();
        assert_eq!(got, [r, e]);
    }

    pub async fn event_pages_walk_every_event_once_newest_first(store: Arc<dyn SessionStore>) {
        // Several events share a millisecond: the id orders them, and a page
        // boundary may fall between them.
        let mut want = Vec::new();
        for (i, at) in [NOW, NOW, NOW + 1, NOW + 1, NOW + 1, NOW + 2, NOW + 5]
            .into_iter()
            .enumerate()
        {
            let mut e = event("login", "alice", at);
            e.id = format!("id{}", (b'a' + (i as u8 * 3) % 7) as char);
            store.record_event(&e).await.unwrap();
            want.push(e);
            let mut other = event("login", "bob", at);
            other.id = format!("bob{i}");
            store.record_event(&other).await.unwrap();
        }
        want.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        for per_page in [1, 2, 3, 7, 50] {
            let (mut got, mut after): (Vec<SecurityEvent>, Option<Position>) = (Vec::new(), None);
            // Bounded: a pager that repeats itself fails instead of hanging.
            for _ in 0..=want.len() {
                let page = store
                    .events_page("alice", after.as_ref(), per_page)
                    .await
                    .unwrap();
                assert!(page.len() <= per_page);
                got.extend(page.iter().cloned());
                match page.last() {
                    Some(last) if page.len() == per_page => after = Some(Position::of_event(last)),
                    _ => break,
                }
            }
            assert_eq!(got, want, "pages of {per_page}");
        }
        // A position between rows (as after a cleanup) continues below it.
        let between = Position {
            created_at: NOW + 1,
            id: "ide".into(),
        };
        let rest = store
            .events_page("alice", Some(&between), 10)
            .await
            .unwrap();
        let ids: Vec<&str> = rest.iter().map(|e| e.id.as_str()).collect();
        let expect: Vec<&str> = want
            .iter()
            .filter(|e| between.precedes(e.at, &e.id))
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, expect);
        assert!(store
            .events_page("nobody", None, 5)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn who_asked_is_kept_with_an_event(store: Arc<dyn SessionStore>) {
        let mut limited = event("session_revoked", "alice", NOW);
        limited.by = Some(By::Limit);
        store.record_event(&limited).await.unwrap();
        store
            .record_event(&event("login", "alice", NOW + 1))
            .await
            .unwrap();
        let got = store.events_for_user("alice", 10).await.unwrap();
        assert_eq!(got, [event("login", "alice", NOW + 1), limited]);
    }

    pub async fn cleanup_removes_only_what_no_one_can_use(store: Arc<dyn SessionStore>) {
        store
            .create(&session("live", "alice", NOW - HOUR))
            .await
            .unwrap();
        store
            .create(&session("idle", "alice", NOW - 30 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("ancient", "alice", NOW - 8 * 24 * HOUR))
            .await
            .unwrap();
        store
            .create(&session("just-revoked", "alice", NOW - HOUR))
            .await
            .unwrap();
        store
            .create(&session("long-revoked", "alice", NOW - 3 * HOUR))
            .await
            .unwrap();
        store.revoke("just-revoked", NOW - 10).await.unwrap();
        store.revoke("long-revoked", NOW - 2 * HOUR).await.unwrap();
        store
            .record_event(&event("login", "alice", NOW - 40 * 24 * HOUR))
            .await
            .unwrap();
        store
            .record_event(&event("login", "alice", NOW - HOUR))
            .await
            .unwrap();
        let removed = store
            .cleanup(NOW, LIFETIMES, NOW - HOUR, NOW - 30 * 24 * HOUR)
            .await
            .unwrap();
        assert_eq!(removed, 4, "idle, ancient, long-revoked and the old event");
        for (id, kept) in [
            ("live", true),
            ("idle", false),
            ("ancient", false),
            ("just-revoked", true),
            ("long-revoked", false),
        ] {
            assert_eq!(store.get(id).await.unwrap().is_some(), kept, "{id}");
        }
        assert_eq!(store.events_for_user("alice", 10).await.unwrap().len(), 1);
    }

    pub async fn ping_and_flush_answer(store: Arc<dyn SessionStore>) {
        store.ping().await.unwrap();
        // What `flush` promises is backend-specific (a no-op on Redis): see
        // `sqlite_flush_leaves_every_write_in_the_main_file` for SQLite.
        store.flush().await.unwrap();
    }
}

/// One `#[tokio::test]` per contract case for a backend.
macro_rules! store_contract {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            store_contract!(@cases $open;
                a_created_session_reads_back_as_written,
                rotation_moves_the_generation_and_records_the_activity,
                rotation_with_a_stale_generation_is_a_conflict,
                a_generation_ahead_of_the_store_writes_nothing,
                an_expired_session_cannot_rotate,
                concurrent_rotations_of_one_generation_have_exactly_one_winner,
                a_revoked_session_cannot_rotate,
                revocation_is_reported_once,
                revoking_a_user_spares_the_excepted_session_and_other_users,
                active_sessions_are_listed_newest_first,
                pages_walk_every_active_session_once_newest_first,
                the_cap_ends_the_least_recently_active_sessions,
                revoked_and_expired_sessions_do_not_count_toward_the_cap,
                concurrent_logins_end_within_the_cap,
                who_asked_is_kept_with_an_event,
                recent_revocations_can_be_reloaded,
                security_events_are_kept_newest_first,
                event_details_read_back_as_written,
                event_pages_walk_every_event_once_newest_first,
                cleanup_removes_only_what_no_one_can_use,
                ping_and_flush_answer);
        }
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard): Fresh = $open;
                contract::$case(store).await;
            }
        )*
    };
}

fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("contract.db")).unwrap();
    (Arc::new(store), Box::new(dir))
}

store_contract!(sqlite, sqlite());

/// SQLite's `flush` is where it means something: the WAL is checkpointed,
/// so the main file alone holds every write (what a backup copies, and what
/// survives losing the `-wal` file). Without it the rows live only in the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flush_leaves_every_write_in_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create(&session("s1", "alice", NOW)).await.unwrap();
    store.revoke("s1", NOW + 1).await.unwrap();
    store.create(&session("s2", "bob", NOW)).await.unwrap();
    store.flush().await.unwrap();
    // The store is still open (no checkpoint on close yet): copy the main
    // file alone, as if the process were killed and its WAL lost.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let reopened = SqliteStore::open(&copy).unwrap();
    let s1 = reopened
        .get("s1")
        .await
        .unwrap()
        .expect("s1 in the main file");
    assert_eq!(
        s1.revoked_at,
        Some(NOW + 1),
        "the revocation is not in the main file"
    );
    assert_eq!(
        reopened.get("s2").await.unwrap(),
        Some(session("s2", "bob", NOW))
    );
    // And the original reopens with the same rows.
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert!(again.get("s1").await.unwrap().is_some());
    assert!(again.get("s2").await.unwrap().is_some());
}

/// A Redis store on `urls`; `servers` (killed when the store's guard drops)
/// hold them. Two or more URLs mean cluster mode.
fn redis_on(urls: Vec<String>, servers: Box<dyn Any + Send>) -> Fresh {
    let config = common::redis_server::config(urls, "contract:");
    let retention = Retention {
        lifetimes: LIFETIMES,
        events_ms: 30 * 24 * HOUR,
        revocations_ms: HOUR,
    };
    (
        Arc::new(RedisStore::open(&config, retention).unwrap()),
        servers,
    )
}

/// A Redis store on its own `redis-server` (a free port, killed on drop).
fn redis() -> Fresh {
    let server = RedisServer::start();
    redis_on(vec![server.url()], Box::new(server))
}

store_contract!(redis, redis());

/// The same store in cluster mode (a URL list) on a one-node Redis Cluster:
/// a command or script whose keys span two hash slots fails there.
fn redis_cluster() -> Fresh {
    let server = RedisServer::cluster();
    redis_on(vec![server.url(); 2], Box::new(server))
}

store_contract!(redis_cluster, redis_cluster());

/// The same on a real three-master Redis Cluster: a session, its user's
/// indexes and the revocation log land on different nodes.
fn redis_cluster3() -> Fresh {
    let cluster = common::redis_server::Cluster3::start();
    redis_on(cluster.urls(), Box::new(cluster))
}

store_contract!(redis_cluster3, redis_cluster3());

/// A database written before events had ids (schema version 2) upgrades in
/// place: its events get distinct ids and page like new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events_from_before_event_ids_get_ids_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
        c.execute_batch(include_str!("../migrations/sqlite/0002_limits.sql"))
            .unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        for at in [NOW, NOW, NOW + 1] {
            c.execute(
                "INSERT INTO security_events (kind, user_id, session_id, ip, user_agent, at)
                 VALUES ('login', 'alice', 's', '192.0.2.1', 'old', ?1)",
                [at],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    store
        .record_event(&event("new_ip", "alice", NOW + 2))
        .await
        .unwrap();
    let all = store.events_page("alice", None, 10).await.unwrap();
    let ids: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((all.len(), ids.len()), (4, 4), "{all:?}");
    assert!(all.iter().all(|e| !e.id.is_empty()));
    let first = store.events_page("alice", None, 2).await.unwrap();
    let rest = store
        .events_page("alice", Some(&Position::of_event(&first[1])), 10)
        .await
        .unwrap();
    assert_eq!([first, rest].concat(), all);
}
