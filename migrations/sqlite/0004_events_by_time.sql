-- sessiongate SQLite schema, version 4: the operator's events listing
-- (SPEC 9, GET /admin/v1/security-events without user_id, and
-- `sessiongate events`) pages every user's events by (at, event_id).
CREATE INDEX security_events_by_time_page ON security_events (at, event_id);
DROP INDEX security_events_by_time;
