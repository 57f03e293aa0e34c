-- cooldown: after an HTTP 429, nothing is admitted anywhere until now + ARGV[4] ms.
-- Invariant: a cooldown is only ever extended, never shortened, by this script (two workers
-- hitting 429 at once keep the later end); the cooldown key expires by itself when the cooldown
-- ends, and the state hash, whose `cool` field acquire reads instead of the key, lives at least
-- as long (acquire confirms a running cooldown with the key before refusing anything).
-- Returns {until ms, now ms}.
local duration = tonumber(ARGV[4])
local current = tonumber(redis.call('GET', cooldown_key) or '0') or 0
local until_ms = math.max(current, now + duration)
if until_ms > now then
  redis.call('SET', cooldown_key, int(until_ms), 'PX', int(until_ms - now))
  redis.call('HSET', state_key, 'cool', int(until_ms))
  if redis.call('PTTL', state_key) < until_ms - now then
    redis.call('PEXPIRE', state_key, until_ms - now)
  end
end
return {until_ms, now}
