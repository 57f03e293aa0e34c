-- settle: the reservation ARGV[4] really used ARGV[5] tokens (as the API reported).
-- Invariant: no rolling window's charged tokens ever exceed tpm, and every token the API reported
-- is charged in the ledger exactly once, however late the report comes. Lowering a charge can
-- never break the limit, so an over-estimate is refunded in place (at the grant time). An
-- under-estimate's extra tokens are charged as a separate entry `<id>:x`, placed at the earliest
-- time (>= now) where it fits the same check acquire makes, so later grants wait for it instead
-- of overshooting.
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
local id, actual = ARGV[4], tonumber(ARGV[5])
local used = prune()
local extra_id = id .. ':x'
if redis.call('ZSCORE', requests_key, id) == false then
  local at = tonumber(redis.call('ZSCORE', charges_key, extra_id) or '-1') or -1
  if at >= 0 then
    -- Already settled late (or its grant left the window after an earlier settle): kept as is.
    return {2, 0, tonumber(redis.call('HGET', tokens_key, extra_id) or '0') or 0, at}
  end
  if actual <= 0 then
    return {2, 0, 0, -1}
  end
  at = fits_at(used, actual)
  redis.call('ZADD', charges_key, at, extra_id)
  redis.call('HSET', tokens_key, extra_id, actual)
  redis.call('SET', used_key, used + actual)
  keep()
  return {2, 0, actual, at}
end
local base = tonumber(redis.call('HGET', tokens_key, id) or '0') or 0
local extra = tonumber(redis.call('HGET', tokens_key, extra_id) or '0') or 0
local extra_at = tonumber(redis.call('ZSCORE', charges_key, extra_id) or '-1') or -1

local function set_charge(member, amount, at)
  if amount > 0 then
    redis.call('ZADD', charges_key, at, member)
    redis.call('HSET', tokens_key, member, amount)
  else
    redis.call('ZREM', charges_key, member)
    redis.call('HDEL', tokens_key, member)
  end
end

if actual <= base + extra then
  -- Refund: from the extra charge first, then from the grant-time charge.
  local refund = base + extra - actual
  local from_extra = math.min(extra, refund)
  extra = extra - from_extra
  base = base - (refund - from_extra)
  used = used - refund
  local granted_at = tonumber(redis.call('ZSCORE', charges_key, id) or '0') or 0
  if base > 0 then set_charge(id, base, granted_at) else set_charge(id, 0, 0) end
  if extra > 0 then set_charge(extra_id, extra, extra_at) else set_charge(extra_id, 0, 0); extra_at = -1 end
else
  -- Under-estimate: take the old extra charge out, then place the whole extra where it fits.
  used = used - extra
  set_charge(extra_id, 0, 0)
  extra = actual - base
  extra_at = fits_at(used, extra)
  set_charge(extra_id, extra, extra_at)
  used = used + extra
end
if used < 0 then used = 0 end
redis.call('SET', used_key, used)
keep()
return {1, base, extra, extra_at}
