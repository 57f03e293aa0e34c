-- cooldown: after an HTTP 429, nothing is admitted anywhere until now + ARGV[4] ms.
-- Invariant: a cooldown is only ever extended, never shortened, by this script (two workers
-- hitting 429 at once keep the later end); the key expires by itself when the cooldown ends.
-- Returns {until ms, now ms}.
local duration = tonumber(ARGV[4])
local current = tonumber(redis.call('GET', cooldown_key) or '0') or 0
local until_ms = math.max(current, now + duration)
if until_ms > now then
  redis.call('SET', cooldown_key, until_ms, 'PX', until_ms - now)
end
return {until_ms, now}
