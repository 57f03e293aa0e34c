-- status: what the current rolling window holds, for logs and operators.
-- Invariant: reading status changes nothing but pruning entries that already left the window
-- (which every other script would do anyway).
-- Returns {requests in window, tokens in window, cooldown remaining ms (0 if none), now ms}.
local used = prune()
redis.call('SET', used_key, used)
keep()
local count = redis.call('ZCARD', requests_key)
local until_ms = tonumber(redis.call('GET', cooldown_key) or '0') or 0
return {count, used, math.max(until_ms - now, 0), now}
