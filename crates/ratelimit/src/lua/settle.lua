-- settle: the reservation ARGV[4], granted at ARGV[6] ms, really used ARGV[5] tokens (as the API
-- reported).
-- Invariant: no rolling window's charged tokens ever exceed tpm, and every token the API reported
-- is charged in the ledger exactly once, however late the report comes. Lowering a charge can
-- never break the limit, so an over-estimate is refunded in place (the grant's member is renamed
-- `<id>:<tokens>` at its grant time: the request still counts). An under-estimate's extra tokens
-- are charged as a separate entry `<id>:x`, placed at the earliest time (>= now) where it fits
-- the same check acquire makes, so later grants wait for it instead of overshooting.
-- A late settle (the grant already left the window: a call slower than the window, e.g. a 300 s
-- Gemini call against a 60 s window, or keys lost with a Redis restart) charges ALL the actual
-- tokens as `<id>:x` where they fit (>= now): the estimate charged at the grant time no longer
-- counts in any window that matters, and the API served those tokens just now.
-- Absolute, hence idempotent: settling the same reservation twice with the same actual tokens
-- changes nothing (a retry after a lost reply is harmless); a late settle is taken once (while
-- its `<id>:x` charge is in the window, later settles of the same reservation change nothing).
-- The caller (limiter.rs) only sends reservations this limiter granted.
-- Returns {1, tokens charged at the grant time, extra tokens, extra charge ms or -1} (in window),
--      or {2, 0, tokens charged late, their charge ms or -1} (late).
local id, actual, granted_at = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local st = load_state()
st.xdirty = true -- settle writes every field back (it is not the hot path)
prune(st, 0)
local extra_id = id .. ':x'

-- The grant's member, found among the (few) grants of its millisecond.
local member = nil
if granted_at > now - window then
  local prefix = id .. ':'
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', requests_key, granted_at, granted_at)) do
    if string.sub(m, 1, #prefix) == prefix and m ~= extra_id then
      member = m
      break
    end
  end
end

local function set_extra(amount, at)
  if amount > 0 then
    redis.call('ZADD', charges_key, at, extra_id)
    redis.call('HSET', tokens_key, extra_id, int(amount))
    extra_added(st, at)
  else
    redis.call('ZREM', charges_key, extra_id)
    redis.call('HDEL', tokens_key, extra_id)
  end
end

if member == nil then
  local at = tonumber(redis.call('ZSCORE', charges_key, extra_id) or '-1') or -1
  if at >= 0 then
    -- Already settled late (or its grant left the window after an earlier settle): kept as is.
    keep(st)
    save_state(st)
    return {2, 0, tonumber(redis.call('HGET', tokens_key, extra_id) or '0') or 0, at}
  end
  if actual <= 0 then
    keep(st)
    save_state(st)
    return {2, 0, 0, -1}
  end
  at = fits_at(st, actual)
  set_extra(actual, at)
  st.ux = st.ux + actual
  keep(st)
  save_state(st)
  return {2, 0, actual, at}
end

local base = tokens_of(member)
local extra = tonumber(redis.call('HGET', tokens_key, extra_id) or '0') or 0
local extra_at = tonumber(redis.call('ZSCORE', charges_key, extra_id) or '-1') or -1
local new_base = base
if actual <= base + extra then
  -- Refund: from the extra charge first, then from the grant-time charge.
  local refund = base + extra - actual
  local from_extra = math.min(extra, refund)
  new_base = base - (refund - from_extra)
  if from_extra > 0 then
    extra = extra - from_extra
    st.ux = st.ux - from_extra
    set_extra(extra, extra_at)
    if extra == 0 then extra_at = -1 end
  end
else
  -- Under-estimate: take the old extra charge out, then place the whole extra where it fits.
  st.ux = st.ux - extra
  set_extra(0, 0)
  extra = actual - base
  extra_at = fits_at(st, extra)
  set_extra(extra, extra_at)
  st.ux = st.ux + extra
end
if new_base ~= base then
  redis.call('ZREM', requests_key, member)
  redis.call('ZADD', requests_key, granted_at, id .. ':' .. int(new_base))
  st.ug = st.ug - base + new_base
end
if st.ug < 0 then st.ug = 0 end
if st.ux < 0 then st.ux = 0 end
keep(st)
save_state(st)
return {1, new_base, extra, extra_at}
