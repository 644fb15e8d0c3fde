-- sessiongate SQLite schema, version 3: each security event gets a public,
-- random id (SPEC 8) that pages the events listing (SPEC 4.8) with `at`, and
-- the optional `reason` (operator API) and `scope` (upstream revocation).
ALTER TABLE security_events ADD COLUMN event_id TEXT;
ALTER TABLE security_events ADD COLUMN reason TEXT;
ALTER TABLE security_events ADD COLUMN scope TEXT;

-- Rows written before this version get a random id of their own.
UPDATE security_events SET event_id = lower(hex(randomblob(16))) WHERE event_id IS NULL;

CREATE UNIQUE INDEX security_events_page ON security_events (user_id, at, event_id);
DROP INDEX security_events_by_user;
