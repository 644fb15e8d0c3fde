-- Rotation as one atomic step (SPEC 4.3): check the generation, move it on,
-- record the activity, and extend the TTL to the new end of the session.
-- KEYS[1]: the session hash.
-- ARGV: expected generation, at (ms), ip, user agent, kid, idle ms, absolute ms.
-- Returns {} when the session is unknown, else {'1' (rotated) | '0' (conflict), field, value, ...}.
local h = KEYS[1]
local cur = redis.call('HMGET', h, 'generation', 'revoked_at', 'created_at')
if not cur[1] then
  return {}
end
local flag = '0'
if not cur[2] and cur[1] == ARGV[1] then
  local at = tonumber(ARGV[2])
  redis.call('HSET', h, 'generation', tostring(tonumber(cur[1]) + 1), 'rotated_at', ARGV[2],
    'last_active_at', ARGV[2], 'ip', ARGV[3], 'user_agent', ARGV[4], 'kid', ARGV[5])
  local ends = math.min(tonumber(cur[3]) + tonumber(ARGV[7]), at + tonumber(ARGV[6]))
  redis.call('PEXPIRE', h, tostring(math.max(ends - at, 1000)))
  flag = '1'
end
local out = {flag}
for _, v in ipairs(redis.call('HGETALL', h)) do
  out[#out + 1] = v
end
return out
