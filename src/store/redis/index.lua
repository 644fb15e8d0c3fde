-- A user's live-session index and its cap (sessions.max_per_user), atomic on
-- the user's hash tag. KEYS[1]: live (sid -> created_at ms), KEYS[2]: active
-- (sid -> last activity ms).
-- ARGV: sid, '1' to add it now | '0' to only check, created_at, last_active_at,
-- now, idle ms, absolute ms, cap (0 = none).
-- 1. Drops members whose scores say they have expired.
-- 2. Adds the session. Its activity score is above every other member's, so
--    the order of the index is the order of logins even across replicas whose
--    clocks differ a little: concurrent logins then agree on who is beyond
--    the cap, and together end exactly the sessions beyond it.
-- 3. Returns the least recently active members beyond the cap, least recent
--    first, without the session itself (a later login's call names it if it
--    must go). The caller revokes them, which takes them out of both sets.
local sid, add = ARGV[1], ARGV[2] == '1'
local created, active = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, idle, abs, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - abs)))
drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - idle)))
if add then
  local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= active then
    active = tonumber(top[2]) + 1
  end
  redis.call('ZADD', KEYS[1], string.format('%d', created), sid)
  redis.call('ZADD', KEYS[2], string.format('%d', active), sid)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
local out = {}
if cap <= 0 then
  return out
end
local over = redis.call('ZCARD', KEYS[2]) - cap
if over <= 0 then
  return out
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
  if id ~= sid then
    out[#out + 1] = id
  end
end
return out
