-- A refresh as one atomic step (SPEC 4.3): read the session, check that it is
-- unrevoked, not expired and at the presented generation, and only then move
-- it on, record the activity, extend the TTL to the new end of the session
-- and (one server only) the activity score in the user's `active` index.
-- KEYS[1]: the session hash.
-- ARGV: presented generation, at (ms), ip, user agent, kid, idle ms and
-- absolute ms that decide expiry, idle ms and absolute ms for the TTL, session
-- id, and the user's `active` key around the hex user id (head, tail; head ''
-- = leave the index to the caller).
-- Returns {} when the session is unknown, else {'1' (rotated) | '0' (nothing
-- written), '1' | '0' (index updated here), field, value, ...} with the
-- fields as they were before.
--
-- The index key is named by the hash's user id, so it cannot be declared in
-- KEYS: the caller passes a head only on a single server, where Redis runs it
-- (on a Cluster it lives in another slot and the caller updates it). A server
-- that refuses undeclared keys fails only that call, caught by pcall: the
-- caller then updates the index itself.
local h = KEYS[1]
local before = redis.call('HGETALL', h)
if #before == 0 then
  return {}
end
local f = {}
for i = 1, #before, 2 do
  f[before[i]] = before[i + 1]
end
local at, idle, abs = tonumber(ARGV[2]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl_idle, ttl_abs = tonumber(ARGV[8]), tonumber(ARGV[9])
local created, active = tonumber(f.created_at), tonumber(f.last_active_at)
local flag, indexed = '0', '0'
-- Expired exactly when Lifetimes::is_expired says so: at >= the earlier end.
if created and active and not f.revoked_at and f.generation == ARGV[1]
    and at < math.min(created + abs, active + idle) then
  redis.call('HSET', h, 'generation', tostring(tonumber(f.generation) + 1), 'rotated_at', ARGV[2],
    'last_active_at', ARGV[2], 'ip', ARGV[3], 'user_agent', ARGV[4], 'kid', ARGV[5])
  local ends = math.min(created + ttl_abs, at + ttl_idle)
  redis.call('PEXPIRE', h, tostring(math.max(ends - at, 1000)))
  flag = '1'
  if ARGV[11] ~= '' then
    local hex = string.gsub(f.user_id or '', '.', function(c)
      return string.format('%02x', string.byte(c))
    end)
    local r = redis.pcall('ZADD', ARGV[11] .. hex .. ARGV[12], 'XX', ARGV[2], ARGV[10])
    if type(r) ~= 'table' or not r.err then
      indexed = '1'
    end
  end
end
local out = {flag, indexed}
for _, v in ipairs(before) do
  out[#out + 1] = v
end
return out
