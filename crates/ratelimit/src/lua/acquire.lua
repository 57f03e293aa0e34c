-- acquire: decide, one after the other, the requests estimated at ARGV[4], ARGV[5], ... tokens
-- (the acquires one process had in flight at the same moment; usually just one): each is admitted
-- now, or told how long until it would fit.
-- Invariant: a request is admitted only if, counting every entry kept (all have time >
-- now - window, i.e. every entry of any rolling window that contains now) and the requests this
-- call admitted before it, the requests stay <= rpm and the charged tokens stay <= tpm. Check and
-- add happen in this one script, so no interleaving of any number of processes can push any
-- rolling window above either limit; deciding several requests in one call is the same as calling
-- once per request in the same order, with no other script in between.
-- While a cooldown (after an HTTP 429) runs, nothing is admitted.
-- Reservation ids never repeat, even after an idle limiter's keys expired (see below).
-- Cost: one call runs 4 commands however many requests it grants (TIME, HMGET of the state, one
-- ZADD of every grant, HSET of the state): the count and the sums come from the state hash, not
-- from reads; the prune's ZRANGEBYSCORE + ZREMRANGEBYSCORE run in batches (see prune() in the
-- prelude), PEXPIREs about once a window.
-- Returns {now ms, then two items per request, in order: 1, reservation id (granted at now)
--          | 2, wait ms (the window holds rpm requests) | 3, wait ms (the tokens do not fit)
--          | 4, wait ms (cooldown) | 5, tpm (the estimate alone exceeds the whole budget: it
--          would never fit)}.
local out = {now}

local st = load_state()
if st.cool > now then
  -- The cooldown key is the authority (an operator may have deleted it to end the cooldown).
  local until_ms = tonumber(redis.call('GET', cooldown_key) or '0') or 0
  if until_ms > now then
    for i = 4, #ARGV do
      if tonumber(ARGV[i]) > tpm then
        out[#out + 1] = 5; out[#out + 1] = tpm
      else
        out[#out + 1] = 4; out[#out + 1] = until_ms - now
      end
    end
    return out
  end
  st.cool, st.cdirty = 0, true
end

-- The grants of this call, ZADDed in one command: `score, member, score, member, ...`. Written
-- before anything reads `requests` (a refusal's ZRANGE, fits_at, the exact prune), so every read
-- sees them.
local pending = {}
local function flush()
  if #pending > 0 then
    redis.call('ZADD', requests_key, unpack(pending))
    pending = {}
  end
end

-- Reservation ids only ever grow: one more than the last id handed out, or now (ms) x 1000 when
-- that is larger. The state expires with the other keys when the limiter is idle, and the next id
-- then restarts from the clock, above every id handed out before (fewer than 1000 grants per ms
-- are possible, so the last id never ran ahead of its grant time x 1000 by a whole second's
-- worth); a counter restarting at 1 would reuse ids whose late settles are still to come.
-- An id is kept as hi x 1000 + lo (0 <= lo < 1000) and written `hi` then `lo` on 3 digits: no
-- float formatting (hi, a time in ms, prints exactly).
local hi, lo = now, -1
local seq = tonumber(st.seq) or 0
if seq >= now * 1000 then
  hi, lo = math.floor(seq / 1000), seq % 1000
end

-- A lazy prune first (see prune()); an exact one only if a request would not fit otherwise.
prune(st, math.min(math.floor(window / 8), 1000))
-- `created`: a grant found the requests set empty (it has no expiry yet).
local granted, created = false, false
for i = 4, #ARGV do
  local estimate = tonumber(ARGV[i])
  if estimate > tpm then
    out[#out + 1] = 5; out[#out + 1] = tpm
  else
    local wait, reason = 0, 0
    if st.n + 1 > rpm or st.ug + st.ux + estimate > tpm then
      flush()
      prune(st, 0) -- reads nothing once done: the same `now` for the whole call
      if st.n + 1 > rpm then
        -- n - rpm + 1 grants must leave the window: wait for the (n - rpm)-th oldest (0-based).
        local entry = redis.call('ZRANGE', requests_key, st.n - rpm, st.n - rpm, 'WITHSCORES')
        wait, reason = tonumber(entry[2]) + window - now, 2
      end
      if st.ug + st.ux + estimate > tpm and st.ux ~= 0 and redis.call('EXISTS', charges_key) == 0 then
        -- No extra charge is kept at all: that sum drifted (keys edited or lost by hand); it is 0.
        st.ux, st.xmin, st.xmax, st.dirty, st.xdirty = 0, 0, 0, true, true
        redis.call('DEL', tokens_key)
      end
      if st.ug + st.ux + estimate > tpm then
        local w = fits_at(st, estimate) - now
        if w > wait then wait, reason = w, 3 end
      end
    end
    if wait > 0 then
      out[#out + 1] = reason; out[#out + 1] = wait
    else
      lo = lo + 1
      if lo == 1000 then hi, lo = hi + 1, 0 end
      local id = hi .. (lo < 10 and '00' or (lo < 100 and '0' or '')) .. lo
      -- The member carries its tokens (the argument as sent: no float formatting), so pruning
      -- needs no lookup.
      pending[#pending + 1] = now; pending[#pending + 1] = id .. ':' .. ARGV[i]
      if st.n == 0 then st.rmin, created = now, true end
      st.seq, st.n, st.ug, st.rmax, granted = id, st.n + 1, st.ug + estimate, now, true
      out[#out + 1] = 1; out[#out + 1] = hi * 1000 + lo
    end
  end
end
flush()

if granted then
  -- A requests set created just now has no expiry yet; otherwise refresh only when due.
  if created or st.fresh or st.kept - now < window + 1000 then
    keep(st)
  end
  save_state(st)
elseif st.dirty or st.fresh then
  -- The state must keep matching the keys the prune changed (or a hash rebuilt from them).
  if st.fresh then keep(st) end
  save_state(st)
end
return out
