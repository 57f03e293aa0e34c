-- acquire: admit one request estimated at ARGV[4] tokens now, or say how long until it would fit.
-- Invariant: a request is admitted only if, counting every entry kept (all have time >
-- now - window, i.e. every entry of any rolling window that contains now), the requests stay
-- <= rpm and the charged tokens stay <= tpm. Check and add happen in this one script, so no
-- interleaving of any number of processes can push any rolling window above either limit.
-- While a cooldown (after an HTTP 429) runs, nothing is admitted.
-- Reservation ids never repeat, even after an idle limiter's keys expired (see below).
-- Cost: a grant runs 4 commands (TIME, HMGET of the state, ZADD, HSET of the state): the count and
-- the sums come from the state hash, not from reads; the prune's ZRANGEBYSCORE + ZREMRANGEBYSCORE
-- run in batches (see prune() in the prelude), PEXPIREs about once a window.
-- Returns {1, reservation id, grant ms, requests in window, tokens in window}
--      or {0, wait ms, 'cooldown'|'requests'|'tokens', now ms}
--      or {-1, tpm} when the estimate alone exceeds the whole tokens budget (it would never fit).
local estimate = tonumber(ARGV[4])
if estimate > tpm then
  return {-1, tpm}
end

local st = load_state()
if st.cool > now then
  -- The cooldown key is the authority (an operator may have deleted it to end the cooldown).
  local until_ms = tonumber(redis.call('GET', cooldown_key) or '0') or 0
  if until_ms > now then
    return {0, until_ms - now, 'cooldown', now}
  end
  st.cool, st.cdirty = 0, true
end

-- A lazy prune first (see prune()); an exact one only if the request would not fit otherwise.
prune(st, math.min(math.floor(window / 8), 1000))
if st.n + 1 > rpm or st.ug + st.ux + estimate > tpm then
  prune(st, 0)
end
local count = st.n
local wait, reason = 0, ''
if count + 1 > rpm then
  -- count - rpm + 1 grants must leave the window: wait for the (count - rpm)-th oldest (0-based).
  local entry = redis.call('ZRANGE', requests_key, count - rpm, count - rpm, 'WITHSCORES')
  wait, reason = tonumber(entry[2]) + window - now, 'requests'
end
if st.ug + st.ux + estimate > tpm and st.ux ~= 0 and redis.call('EXISTS', charges_key) == 0 then
  -- No extra charge is kept at all: that sum drifted (keys edited or lost by hand); it is 0.
  st.ux, st.xmin, st.xmax, st.dirty, st.xdirty = 0, 0, 0, true, true
  redis.call('DEL', tokens_key)
end
if st.ug + st.ux + estimate > tpm then
  local w = fits_at(st, estimate) - now
  if w > wait then wait, reason = w, 'tokens' end
end
if wait > 0 then
  -- The state must keep matching the keys the prune changed (or a hash rebuilt from them).
  if st.dirty or st.fresh then
    if st.fresh then keep(st) end
    save_state(st)
  end
  return {0, wait, reason, now}
end

-- Reservation ids only ever grow: one more than the last id handed out, or now (ms) x 1000 when
-- that is larger. The state expires with the other keys when the limiter is idle, and the next id
-- then restarts from the clock, above every id handed out before (fewer than 1000 grants per ms
-- are possible, so the last id never ran ahead of its grant time x 1000 by a whole second's
-- worth); a counter restarting at 1 would reuse ids whose late settles are still to come.
local id = now .. '000'
if (tonumber(st.seq) or 0) >= now * 1000 then
  id = string.format('%.0f', tonumber(st.seq) + 1)
end
-- The member carries its tokens (ARGV[4] as sent: no float formatting), so pruning needs no lookup.
redis.call('ZADD', requests_key, now, id .. ':' .. ARGV[4])
if count == 0 then
  st.rmin = now
end
st.seq, st.n, st.ug, st.rmax = id, count + 1, st.ug + estimate, now
-- A requests set created just now has no expiry yet; otherwise refresh only when due.
if count == 0 or st.fresh or st.kept - now < window + 1000 then
  keep(st)
end
save_state(st)
return {1, tonumber(id), now, count + 1, st.ug + st.ux}
