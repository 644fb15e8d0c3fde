-- Appends a security event to a user's sorted set (score: time). A member is
-- the event's id, a NUL byte, then the event as JSON: events of the same
-- millisecond sort by id, as the listing's (at, id) order needs.
-- KEYS[1]: the user's event set. ARGV: at (ms), the member, retain (ms).
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
