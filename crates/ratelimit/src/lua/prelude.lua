-- Prelude of every rate-limit script (prepended at build time, see limiter.rs).
-- Invariant it keeps: after prune(), `requests` and `charges` hold exactly the entries whose
-- time is inside the current rolling window or later (time > now - window, on the Redis
-- server's clock, so hosts with skewed clocks agree), `tokens` holds the amount of each charge
-- and nothing else, and `used` equals the sum of those amounts (recomputed to 0 whenever the
-- charges set is found empty: checked whenever charges leave the window, and by acquire before it
-- makes anyone wait for tokens, so a sum that drifted can never hold requests back).
-- KEYS: 1 requests (zset reservation id -> grant ms), 2 charges (zset charge id -> charge ms),
--       3 tokens (hash charge id -> tokens), 4 used (string, sum of tokens),
--       5 cooldown (string, until ms, expires by itself), 6 seq (string, last reservation id).
-- ARGV: 1 window ms (the held window: the API's window plus the arrival margin, see limiter.rs),
--       2 requests per window, 3 tokens per window; script arguments from ARGV[4].
local requests_key, charges_key, tokens_key, used_key, cooldown_key, seq_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Drops everything that left the window (time <= now - window); returns the tokens still charged.
local function prune()
  local horizon = now - window
  redis.call('ZREMRANGEBYSCORE', requests_key, '-inf', horizon)
  local used = tonumber(redis.call('GET', used_key) or '0') or 0
  -- ZCOUNT first: an integer reply costs far less than an (empty) array reply in a script.
  local old = {}
  if redis.call('ZCOUNT', charges_key, '-inf', horizon) > 0 then
    old = redis.call('ZRANGEBYSCORE', charges_key, '-inf', horizon)
  end
  for _, id in ipairs(old) do
    used = used - (tonumber(redis.call('HGET', tokens_key, id) or '0') or 0)
    redis.call('HDEL', tokens_key, id)
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', charges_key, '-inf', horizon)
    -- Only when charges left can the sum be off (a lost HSET, a hand edit): checked then, not on
    -- every call, so a busy limiter pays no ZCARD per decision.
    if used < 0 or (used ~= 0 and redis.call('ZCARD', charges_key) == 0) then
      used = 0
      redis.call('DEL', tokens_key)
    end
    redis.call('SET', used_key, used, 'KEEPTTL')
  elseif used < 0 then
    used = 0
    redis.call('SET', used_key, used, 'KEEPTTL')
  end
  return used
end

-- Earliest time >= now at which `amount` more tokens fit: the sum of the charges whose time is
-- after (that time - window), plus amount, is at most tpm. Charges are walked oldest first, so
-- the cost is bounded by the number of charges kept (see the memory bound in docs/rate-limiter.md).
local function fits_at(used, amount)
  local need = used + amount - tpm
  if need <= 0 then return now end
  -- Pages grow from 8 entries: usually the oldest charge or two free enough.
  local freed, start, batch = 0, 0, 8
  while true do
    local page = redis.call('ZRANGE', charges_key, start, start + batch - 1, 'WITHSCORES')
    if #page == 0 then break end
    for i = 1, #page, 2 do
      freed = freed + (tonumber(redis.call('HGET', tokens_key, page[i]) or '0') or 0)
      if freed >= need then
        return math.max(tonumber(page[i + 1]) + window, now)
      end
    end
    start = start + batch
    batch = math.min(batch * 4, 1024)
  end
  -- Only reachable when amount alone exceeds tpm: after every charge kept has left the window.
  local last = redis.call('ZRANGE', charges_key, -1, -1, 'WITHSCORES')
  if #last == 2 then return math.max(tonumber(last[2]) + window, now) end
  return now
end

-- Every key of the limiter disappears at most two windows (+ 1 s) after its latest entry, so an
-- idle limiter leaves nothing behind (the cooldown key carries its own expiry). Each key gets the
-- same expiry here, one window longer than needed, so that keep_lazy() can skip the five PEXPIRE
-- on most calls.
local function keep()
  local last = now
  local top = redis.call('ZRANGE', charges_key, -1, -1, 'WITHSCORES')
  if #top == 2 then last = math.max(last, tonumber(top[2])) end
  local ttl = last - now + 2 * window + 1000
  for _, key in ipairs({requests_key, charges_key, tokens_key, used_key, seq_key}) do
    redis.call('PEXPIRE', key, ttl)
  end
end

-- keep() for acquire, which only adds entries at `now`: every key must live at least one window
-- (+ 1 s) more. The keys were all given one expiry by the last keep() and their later writes keep
-- it (SET ... KEEPTTL), so one PTTL tells for all of them, unless a key may have been created
-- since without an expiry: the requests set was empty (`fresh`), or no tokens were charged (the
-- tokens hash and charges set may have been emptied and deleted). Then keep() runs in full.
local function keep_lazy(fresh)
  if fresh or redis.call('PTTL', requests_key) < window + 1000 then
    keep()
  end
end
