-- Takes one token from a rate-limit bucket that every replica shares.
-- KEYS[1]: the bucket hash {t = tokens left, at = ms of that count}; absent = full.
-- ARGV[1]: per_minute, ARGV[2]: burst.
-- Returns {1, 0} to go ahead, or {0, seconds until a token is there}.
-- The clock is the server's (TIME), so replicas with skewed clocks agree; the
-- hash expires when the bucket would be full again, so an idle IP costs nothing.
local per_ms = tonumber(ARGV[1]) / 60000
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cur = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(cur[1]), tonumber(cur[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
elseif now > at then
  tokens, at = math.min(burst, tokens + (now - at) * per_ms), now
end
-- (A server clock that went back, after a failover, refills nothing until it
-- passes `at` again or the hash expires.)
if tokens < 1 then
  -- Denied: the stored count and its TTL stay right as they are.
  return {0, math.max(1, math.ceil((1 - tokens) / per_ms / 1000))}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], tostring(math.max(1, math.ceil((burst - tokens) / per_ms))))
return {1, 0}
