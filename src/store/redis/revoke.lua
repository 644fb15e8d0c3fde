-- Revokes one session unless it already is; the hash keeps its TTL so that a
-- refresh answers session_revoked until the session would have ended anyway.
-- KEYS[1]: the session hash. ARGV[1]: the revocation time (ms).
-- Returns {} when unknown, else {'1' (revoked now) | '0' (already), revoked_at, user_id}.
local h = KEYS[1]
local cur = redis.call('HMGET', h, 'generation', 'revoked_at', 'user_id')
if not cur[1] then
  return {}
end
local user = cur[3] or ''
if cur[2] then
  return {'0', cur[2], user}
end
redis.call('HSET', h, 'revoked_at', ARGV[1])
return {'1', ARGV[1], user}
