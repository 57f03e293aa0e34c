-- Prelude of every rate-limit script (prepended at build time, see limiter.rs).
-- Invariant it keeps: after prune(), `requests` holds exactly the grants whose time is inside the
-- current rolling window (time > now - window, on the Redis server's clock, so hosts with skewed
-- clocks agree), each member `<id>:<tokens>` carrying the tokens charged at its grant time;
-- `charges` / `tokens` hold exactly the extra charges (`<id>:x`, an under-estimate's excess or a
-- late settle) of the window or later; and the `state` hash's counters equal what those keys
-- hold: n = members of `requests`, ug = the tokens in their names, ux = the sum of `tokens`.
-- The counters let a decision skip the reads a check would otherwise need (ZCARD, the sums), and
-- the bounds rmin <= every grant time <= rmax (xmin / xmax for extra charges) let it skip pruning
-- when nothing can have left, or drop a whole key when everything has. A state hash that is
-- missing or incomplete (first use, keys lost) is rebuilt from the keys before anything is decided.
-- KEYS: 1 requests (zset `<id>:<tokens>` -> grant ms), 2 charges (zset `<id>:x` -> charge ms),
--       3 tokens (hash `<id>:x` -> tokens), 4 state (hash, fields below),
--       5 cooldown (string, until ms, expires by itself; `state.cool` mirrors it).
-- ARGV: 1 window ms (the held window: the API's window plus the arrival margin, see limiter.rs),
--       2 requests per window, 3 tokens per window; script arguments from ARGV[4].
local requests_key, charges_key, tokens_key, state_key, cooldown_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- The tokens a grant member `<id>:<tokens>` carries.
local function tokens_of(member)
  return tonumber(string.match(member, ':(%d+)$')) or 0
end

-- Redis prints a Lua number with 14 significant digits (1.2345678901234e+15 beyond): every number
-- written back goes through this. Below 1e14 (times in ms, counts, usual sums) it is passed as is,
-- since string.format costs a script more than the command it feeds.
local function int(x)
  if x < 1e14 and x > -1e14 then return x end
  return string.format('%.0f', x)
end

-- state fields (HMGET in load_state): n, ug, ux (see above), seq (last reservation id, a string), rmin / rmax (bounds of
-- the grant times), xmin / xmax (bounds of the extra charge times, 0 when there is none), cool
-- (end of the cooldown, mirrored from the cooldown key), kept (every key lives at least until then).

-- Recomputes the counters from the keys (a missing or incomplete state hash).
local function rebuild(st)
  local all = redis.call('ZRANGE', requests_key, 0, -1, 'WITHSCORES')
  st.n, st.ug, st.rmin, st.rmax = #all / 2, 0, 0, 0
  for i = 1, #all, 2 do
    st.ug = st.ug + tokens_of(all[i])
  end
  if #all > 0 then
    st.rmin, st.rmax = tonumber(all[2]), tonumber(all[#all])
  end
  local extras = redis.call('ZRANGE', charges_key, 0, -1, 'WITHSCORES')
  st.ux, st.xmin, st.xmax = 0, 0, 0
  for i = 1, #extras, 2 do
    st.ux = st.ux + (tonumber(redis.call('HGET', tokens_key, extras[i]) or '0') or 0)
  end
  if #extras > 0 then
    st.xmin, st.xmax = tonumber(extras[2]), tonumber(extras[#extras])
  end
  st.kept = 0
  st.fresh = true
end

-- The state, in one table built by one constructor (a script's allocations are most of its cost).
local function load_state()
  local v = redis.call('HMGET', state_key, 'n', 'ug', 'ux', 'seq', 'rmin', 'rmax', 'xmin', 'xmax', 'cool', 'kept')
  local st = {
    n = tonumber(v[1] or ''), ug = tonumber(v[2] or '0') or 0, ux = tonumber(v[3] or '0') or 0, seq = v[4] or '0',
    rmin = tonumber(v[5] or '0') or 0, rmax = tonumber(v[6] or '0') or 0, xmin = tonumber(v[7] or '0') or 0,
    xmax = tonumber(v[8] or '0') or 0, cool = tonumber(v[9] or '0') or 0, kept = tonumber(v[10] or '0') or 0,
    fresh = false, dirty = false, xdirty = false, cdirty = false, state_ttl = false,
  }
  if st.n == nil or st.n < 0 then
    rebuild(st)
  end
  return st
end

-- One HSET: the fields every grant changes, plus the others when they changed (`xdirty`: the
-- extra charges' sum or bounds, `cdirty`: the cooldown) or when the hash is new (`fresh`); and the
-- state's expiry when keep() ran (the hash may have been created by this very HSET).
local function save_state(st)
  if st.fresh or st.xdirty or st.cdirty or st.state_ttl then
    redis.call('HSET', state_key, 'n', st.n, 'ug', int(st.ug), 'ux', int(st.ux), 'seq', st.seq,
      'rmin', st.rmin, 'rmax', st.rmax, 'xmin', st.xmin, 'xmax', st.xmax, 'cool', st.cool, 'kept', st.kept)
  else
    redis.call('HSET', state_key, 'n', st.n, 'ug', int(st.ug), 'seq', st.seq, 'rmin', st.rmin, 'rmax', st.rmax)
  end
  if st.state_ttl then
    redis.call('PEXPIRE', state_key, st.state_ttl)
  end
end

-- Drops everything that left the window (time <= now - window) and updates the counters (`dirty`
-- when the keys changed: the caller must then save the state, even if it decides nothing).
-- Nothing is read when the bounds say nothing left; a key is deleted whole when all of it left.
-- `slack` > 0 (acquire's first look) prunes only once the oldest entry is `slack` ms past the
-- window: until then the counters include a few entries that already left, which can only make
-- them larger, so a request that fits them fits the exact window too; acquire prunes exactly
-- (slack 0) before refusing anything. Entries are then removed in batches instead of a few per
-- call, and at most window + slack of grants are kept (see the memory bound in docs/rate-limiter.md).
local function prune(st, slack)
  local horizon = now - window
  if st.n > 0 and st.rmin <= horizon - slack then
    if st.rmax <= horizon then
      redis.call('DEL', requests_key)
      st.n, st.ug, st.dirty = 0, 0, true
    else
      local gone = redis.call('ZRANGEBYSCORE', requests_key, '-inf', horizon)
      if #gone > 0 then
        for _, member in ipairs(gone) do
          st.ug = st.ug - tokens_of(member)
        end
        redis.call('ZREMRANGEBYSCORE', requests_key, '-inf', horizon)
        st.n, st.dirty = st.n - #gone, true
      end
      st.rmin = horizon + 1
    end
    if st.n <= 0 then
      st.n, st.ug = 0, 0
    elseif st.ug < 0 then
      st.ug = 0
    end
  end
  if st.xmax > 0 and st.xmin <= horizon - slack then
    if st.xmax <= horizon then
      redis.call('DEL', charges_key, tokens_key)
      st.ux, st.xmin, st.xmax, st.dirty, st.xdirty = 0, 0, 0, true, true
    else
      local gone = redis.call('ZRANGEBYSCORE', charges_key, '-inf', horizon)
      for _, id in ipairs(gone) do
        st.ux = st.ux - (tonumber(redis.call('HGET', tokens_key, id) or '0') or 0)
        redis.call('HDEL', tokens_key, id)
      end
      if #gone > 0 then
        redis.call('ZREMRANGEBYSCORE', charges_key, '-inf', horizon)
        st.dirty = true
      end
      st.xmin, st.xdirty = horizon + 1, true
      if st.ux < 0 then st.ux = 0 end
    end
  end
end

-- Records an extra charge placed at `at` in the bounds.
local function extra_added(st, at)
  st.xdirty = true
  if st.xmax == 0 then
    st.xmin, st.xmax = at, at
  else
    st.xmin, st.xmax = math.min(st.xmin, at), math.max(st.xmax, at)
  end
end

-- Earliest time >= now at which `amount` more tokens fit: the sum of the charges (grants and
-- extras) whose time is after (that time - window), plus amount, is at most tpm. Charges are
-- walked oldest first, grants and extras merged by time, so the cost is bounded by the number of
-- charges kept (see the memory bound in docs/rate-limiter.md).
local function fits_at(st, amount)
  local need = st.ug + st.ux + amount - tpm
  if need <= 0 then return now end
  local extras = {}
  if st.xmax > 0 then
    local page = redis.call('ZRANGE', charges_key, 0, -1, 'WITHSCORES')
    for i = 1, #page, 2 do
      extras[#extras + 1] = {tonumber(page[i + 1]), tonumber(redis.call('HGET', tokens_key, page[i]) or '0') or 0}
    end
  end
  local freed, last, xi = 0, now, 1
  local function take(at, tokens)
    freed = freed + tokens
    last = math.max(last, at)
    return freed >= need
  end
  -- Pages grow from 8 entries: usually the oldest charge or two free enough.
  local start, batch = 0, 8
  while true do
    local page = redis.call('ZRANGE', requests_key, start, start + batch - 1, 'WITHSCORES')
    for i = 1, #page, 2 do
      local at = tonumber(page[i + 1])
      while xi <= #extras and extras[xi][1] <= at do
        if take(extras[xi][1], extras[xi][2]) then return math.max(extras[xi][1] + window, now) end
        xi = xi + 1
      end
      if take(at, tokens_of(page[i])) then return math.max(at + window, now) end
    end
    if #page < 2 * batch then break end
    start = start + batch
    batch = math.min(batch * 4, 1024)
  end
  while xi <= #extras do
    if take(extras[xi][1], extras[xi][2]) then return math.max(extras[xi][1] + window, now) end
    xi = xi + 1
  end
  -- Only reachable when amount alone exceeds tpm: after every charge kept has left the window.
  return math.max(last + window, now)
end

-- Every key of the limiter disappears at most two windows (+ 1 s) after its latest entry, so an
-- idle limiter leaves nothing behind (the state hash also lives as long as a running cooldown, and
-- the cooldown key carries its own expiry). Each key gets the same expiry, one window longer than
-- needed, and `kept` records it, so that acquire only refreshes them when less than a window
-- (+ 1 s) is left, or when a key may have been created since without an expiry.
local function keep(st)
  local last = math.max(now, st.xmax)
  local ttl = last - now + 2 * window + 1000
  for _, key in ipairs({requests_key, charges_key, tokens_key}) do
    redis.call('PEXPIRE', key, ttl)
  end
  st.state_ttl = math.max(ttl, st.cool - now)
  st.kept = now + ttl
end
