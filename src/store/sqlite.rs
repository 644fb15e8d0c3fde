//! The embedded SQLite store: one file, WAL journal, versioned migrations,
//! every call run off the async workers on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    Activity, By, Lifetimes, Position, RefreshOutcome, Scope, SecurityEvent, SessionRecord,
    SessionStore, StoreError,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records the last one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_limits.sql"),
    include_str!("../../migrations/sqlite/0003_event_ids.sql"),
    include_str!("../../migrations/sqlite/0004_events_by_time.sql"),
];

/// How long a statement waits for a lock held by someone else before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// (device, inode) of the file we opened: if the path stops naming it
    /// (deleted, replaced), writes would vanish, so every call fails instead.
    file: (u64, u64),
}

fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl SqliteStore {
    /// Opens (creating folder and file if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // In WAL mode NORMAL keeps every committed transaction across a process
        // crash; only an OS crash or power loss can drop the last few.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        migrate(&mut conn)?;
        let file =
            file_identity(path).map_err(|e| StoreError::io(path.display().to_string(), e))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let (path, file) = (self.path.clone(), self.file);
        tokio::task::spawn_blocking(move || {
            if file_identity(&path).ok() != Some(file) {
                return Err(StoreError::Invalid(format!(
                    "the database file {} was deleted or replaced while in use; restart sessiongate",
                    path.display()
                )));
            }
            let mut guard = conn
                .lock()
                .map_err(|_| {
                    StoreError::Invalid("the SQLite connection was poisoned by a panic".into())
                })?;
            f(&mut guard).map_err(err)
        })
        .await
        .map_err(|e| StoreError::io("store task failed", e))?
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "the database has schema version {version}, newer than this sessiongate knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

const COLUMNS: &str = "id, user_id, claims, created_at, last_active_at, ip, user_agent, generation, kid, rotated_at, revoked_at";

fn record(r: &Row) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        claims: r.get(2)?,
        created_at: r.get(3)?,
        last_active_at: r.get(4)?,
        ip: r.get(5)?,
        user_agent: r.get(6)?,
        generation: r.get::<_, i64>(7)? as u64,
        kid: r.get(8)?,
        rotated_at: r.get(9)?,
        revoked_at: r.get(10)?,
    })
}

fn insert(conn: &Connection, s: &SessionRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        s.id,
        s.user_id,
        s.claims,
        s.created_at,
        s.last_active_at,
        s.ip,
        s.user_agent,
        s.generation as i64,
        s.kid,
        s.rotated_at,
        s.revoked_at
    ])
    .map(|_| ())
}

fn get_row(conn: &Connection, id: &str) -> rusqlite::Result<Option<SessionRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"))?
        .query_row([id], record)
        .optional()
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(move |c| insert(c, &s)).await
    }

    async fn create_capped(
        &self,
        s: &SessionRecord,
        max_per_user: usize,
        l: Lifetimes,
    ) -> Result<Vec<String>, StoreError> {
        let s = s.clone();
        // One write transaction: concurrent logins (other processes on the
        // file included) take turns, so the cap holds exactly.
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert(&tx, &s)?;
            let live = "FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND id != ?2
                        AND created_at + ?3 > ?5 AND last_active_at + ?4 > ?5";
            let others: i64 = tx
                .prepare_cached(&format!("SELECT COUNT(*) {live}"))?
                .query_row(
                    params![s.user_id, s.id, l.absolute_ms, l.idle_ms, s.created_at],
                    |r| r.get(0),
                )?;
            let over = (others + 1).saturating_sub(max_per_user as i64);
            let mut ids = Vec::new();
            if over > 0 {
                ids = tx
                    .prepare_cached(&format!(
                        "SELECT id {live} ORDER BY last_active_at ASC, id ASC LIMIT ?6"
                    ))?
                    .query_map(
                        params![
                            s.user_id,
                            s.id,
                            l.absolute_ms,
                            l.idle_ms,
                            s.created_at,
                            over
                        ],
                        |r| r.get::<_, String>(0),
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                let mut revoke = tx.prepare_cached(
                    "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                )?;
                for id in &ids {
                    revoke.execute(params![id, s.created_at])?;
                }
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| get_row(c, &id)).await
    }

    async fn refresh(
        &self,
        id: &str,
        presented: u64,
        a: &Activity,
        l: Lifetimes,
    ) -> Result<RefreshOutcome, StoreError> {
        let (id, a) = (id.to_owned(), a.clone());
        self.run(move |c| {
            // Read and write in one write transaction: no other writer (another
            // process on the file included) gets between the check and the update.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(before) = get_row(&tx, &id)? else {
                return Ok(RefreshOutcome::NotFound);
            };
            if before.revoked_at.is_some()
                || l.is_expired(&before, a.at)
                || before.generation != presented
            {
                return Ok(RefreshOutcome::Unchanged(before));
            }
            let after = before.rotated(&a);
            tx.prepare_cached(
                "UPDATE sessions SET generation = ?2, rotated_at = ?3, last_active_at = ?3,
                 ip = ?4, user_agent = ?5, kid = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                after.generation as i64,
                a.at,
                a.ip,
                a.user_agent,
                a.kid
            ])?;
            tx.commit()?;
            Ok(RefreshOutcome::Rotated { before, after })
        })
        .await
    }

    async fn revoke(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id, at])
            .map(|n| n == 1)
        })
        .await
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (user_id, except) = (user_id.to_owned(), except.map(str::to_owned));
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = tx
                .prepare_cached(
                    "UPDATE sessions SET revoked_at = ?3
                     WHERE user_id = ?1 AND revoked_at IS NULL AND id IS NOT ?2 RETURNING id",
                )?
                .query_map(params![user_id, except, at], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    async fn list_active(
        &self,
        user_id: &str,
        now: i64,
        l: Lifetimes,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let user_id = user_id.to_owned();
        let after = after.cloned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let live = format!(
                "SELECT {COLUMNS} FROM sessions
                 WHERE user_id = ?1 AND revoked_at IS NULL
                   AND created_at + ?3 > ?2 AND last_active_at + ?4 > ?2"
            );
            let order = "ORDER BY created_at DESC, id DESC LIMIT ?5";
            match after {
                None => c
                    .prepare_cached(&format!("{live} {order}"))?
                    .query_map(
                        params![user_id, now, l.absolute_ms, l.idle_ms, limit],
                        record,
                    )?
                    .collect(),
                Some(p) => c
                    .prepare_cached(&format!("{live} AND (created_at, id) < (?6, ?7) {order}"))?
                    .query_map(
                        params![
                            user_id,
                            now,
                            l.absolute_ms,
                            l.idle_ms,
                            limit,
                            p.created_at,
                            p.id
                        ],
                        record,
                    )?
                    .collect(),
            }
        })
        .await
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(move |c| {
            c.prepare_cached("SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?1")?
                .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await
    }

    async fn record_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO security_events
                 (kind, user_id, session_id, ip, user_agent, at, requested_by, event_id, reason, scope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                e.kind,
                e.user_id,
                e.session_id,
                e.ip,
                e.user_agent,
                e.at,
                e.by.map(By::as_str),
                e.id,
                e.reason,
                e.scope.map(Scope::as_str)
            ])
            .map(|_| ())
        })
        .await
    }

    async fn events_page(
        &self,
        user_id: &str,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let user_id = user_id.to_owned();
        let after = after.cloned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let select = format!("SELECT {EVENT_COLUMNS} FROM security_events WHERE user_id = ?1");
            let order = "ORDER BY at DESC, event_id DESC LIMIT ?2";
            match after {
                None => c
                    .prepare_cached(&format!("{select} {order}"))?
                    .query_map(params![user_id, limit], event_row)?
                    .collect(),
                Some(p) => c
                    .prepare_cached(&format!("{select} AND (at, event_id) < (?3, ?4) {order}"))?
                    .query_map(params![user_id, limit, p.created_at, p.id], event_row)?
                    .collect(),
            }
        })
        .await
    }

    async fn all_events_page(
        &self,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let after = after.cloned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let select = format!("SELECT {EVENT_COLUMNS} FROM security_events");
            let order = "ORDER BY at DESC, event_id DESC LIMIT ?1";
            match after {
                None => c
                    .prepare_cached(&format!("{select} {order}"))?
                    .query_map(params![limit], event_row)?
                    .collect(),
                Some(p) => c
                    .prepare_cached(&format!("{select} WHERE (at, event_id) < (?2, ?3) {order}"))?
                    .query_map(params![limit, p.created_at, p.id], event_row)?
                    .collect(),
            }
        })
        .await
    }

    async fn cleanup(
        &self,
        now: i64,
        l: Lifetimes,
        revoked_before: i64,
        events_before: i64,
    ) -> Result<u64, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let sessions = tx.execute(
                "DELETE FROM sessions
                 WHERE (revoked_at IS NULL AND (created_at + ?2 <= ?1 OR last_active_at + ?3 <= ?1))
                    OR (revoked_at IS NOT NULL AND revoked_at < ?4)",
                params![now, l.absolute_ms, l.idle_ms, revoked_before],
            )?;
            let events =
                tx.execute("DELETE FROM security_events WHERE at < ?1", [events_before])?;
            tx.commit()?;
            Ok((sessions + events) as u64)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Move the WAL into the main file so the database is one self-contained file.
        self.run(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .await
    }
}

const EVENT_COLUMNS: &str =
    "event_id, kind, user_id, session_id, ip, user_agent, at, requested_by, reason, scope";

fn event_row(r: &Row) -> rusqlite::Result<SecurityEvent> {
    Ok(SecurityEvent {
        id: r.get(0)?,
        kind: crate::names::event::kind_of(&r.get::<_, String>(1)?),
        user_id: r.get(2)?,
        session_id: r.get(3)?,
        ip: r.get(4)?,
        user_agent: r.get(5)?,
        at: r.get(6)?,
        by: r
            .get::<_, Option<String>>(7)?
            .as_deref()
            .and_then(By::parse),
        reason: r.get(8)?,
        scope: r
            .get::<_, Option<String>>(9)?
            .as_deref()
            .and_then(Scope::parse),
    })
}
