-- sessiongate SQLite schema, version 2: the per-user session cap, paged
-- listings, and who asked for a revocation.
-- Only unrevoked rows: a user's revoked sessions (kept until cleanup) are
-- never walked when listing or counting the active ones.
CREATE INDEX sessions_live_by_user ON sessions (user_id, created_at, id)
    WHERE revoked_at IS NULL;
CREATE INDEX sessions_live_by_activity ON sessions (user_id, last_active_at, id)
    WHERE revoked_at IS NULL;

-- SPEC 8's `by` (user, admin, upstream, limit); NULL where it does not apply.
ALTER TABLE security_events ADD COLUMN requested_by TEXT;
