-- acquire: admit one request estimated at ARGV[4] tokens now, or say how long until it would fit.
-- Invariant: a request is admitted only if, counting every entry kept (all have time >
-- now - window, i.e. every entry of any rolling window that contains now), the requests stay
-- <= rpm and the charged tokens stay <= tpm. Check and add happen in this one script, so no
-- interleaving of any number of processes can push any rolling window above either limit.
-- While a cooldown (after an HTTP 429) runs, nothing is admitted.
-- Reservation ids never repeat, even after an idle limiter's keys expired (see below).
-- Returns {1, reservation id, grant ms, requests in window, tokens in window}
--      or {0, wait ms, 'cooldown'|'requests'|'tokens', now ms}
--      or {-1, tpm} when the estimate alone exceeds the whole tokens budget (it would never fit).
local estimate = tonumber(ARGV[4])
if estimate > tpm then
  return {-1, tpm}
end

local until_ms = tonumber(redis.call('GET', cooldown_key) or '0') or 0
if until_ms > now then
  return {0, until_ms - now, 'cooldown', now}
end

local used = prune()
local charged_before = used
local count = redis.call('ZCARD', requests_key)
local wait, reason = 0, ''
if count + 1 > rpm then
  -- count - rpm + 1 grants must leave the window: wait for the (count - rpm)-th oldest (0-based).
  local entry = redis.call('ZRANGE', requests_key, count - rpm, count - rpm, 'WITHSCORES')
  wait, reason = tonumber(entry[2]) + window - now, 'requests'
end
if used + estimate > tpm and used ~= 0 and redis.call('ZCARD', charges_key) == 0 then
  -- Nothing is charged at all: the sum drifted (keys edited or lost by hand); it is 0.
  used = 0
  redis.call('DEL', tokens_key)
  redis.call('SET', used_key, 0, 'KEEPTTL')
end
if used + estimate > tpm then
  local w = fits_at(used, estimate) - now
  if w > wait then wait, reason = w, 'tokens' end
end
if wait > 0 then
  return {0, wait, reason, now}
end

-- Reservation ids only ever grow: one more than the last id handed out, or now (ms) x 1000 when
-- that is larger. `seq` expires with the other keys when the limiter is idle, and the next id then
-- restarts from the clock, above every id handed out before (fewer than 1000 grants per ms are
-- possible, so the last id never ran ahead of its grant time x 1000 by a whole second's worth);
-- a counter restarting at 1 would reuse ids whose late settles are still to come.
local last = tonumber(redis.call('GET', seq_key) or '0') or 0
local id = string.format('%.0f', math.max(last + 1, now * 1000))
redis.call('SET', seq_key, id, 'KEEPTTL')
redis.call('ZADD', requests_key, now, id)
if estimate > 0 then
  redis.call('ZADD', charges_key, now, id)
  redis.call('HSET', tokens_key, id, estimate)
  used = used + estimate
end
redis.call('SET', used_key, used, 'KEEPTTL')
keep_lazy(count == 0 or charged_before == 0)
return {1, tonumber(id), now, count + 1, used}
