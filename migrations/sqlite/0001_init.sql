-- sessiongate SQLite schema, version 1.
-- A session row never holds a refresh token: only the rotation generation
-- and the kid of the key that MACs the current token.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL,
    claims         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    ip             TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    generation     INTEGER NOT NULL,
    kid            TEXT NOT NULL,
    rotated_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_revocation ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE security_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    at         INTEGER NOT NULL
);

CREATE INDEX security_events_by_user ON security_events (user_id, at);
CREATE INDEX security_events_by_time ON security_events (at);
