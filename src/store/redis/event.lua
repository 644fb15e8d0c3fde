-- Appends a security event to a user's sorted set (score: time). Members start
-- with a sequence number, so events of the same millisecond keep their order.
-- KEYS[1]: the user's event set, KEYS[2]: its sequence counter (same hash tag).
-- ARGV: at (ms), the event as JSON, retain (ms).
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[1], string.format('%016d', seq) .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return seq
