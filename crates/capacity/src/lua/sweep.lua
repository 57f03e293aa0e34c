-- Prelude of every capacity script (prepended at build time, see lib.rs).
-- Invariant it keeps: after sweep(), `workers` and `leases` hold exactly the unexpired leases
-- (expiry measured on the Redis server's clock, so hosts with skewed clocks agree) and the two
-- allocated keys equal the sum of those leases' costs in integer thousandths, so they can never
-- drift or leak what a crashed process held.
-- Cost: O(1) + O(expired). The allocated keys are running sums: each script adds or takes away
-- the one lease it changes, and sweep() takes away each expired lease's cost. The full recount
-- (O(all workers)) runs only when the sums cannot be trusted (a key missing or not a number, the
-- hash and the sorted set of different sizes, an expired lease without a readable record: hand
-- edits or a partial restore) and on `status`. A decimal written by decimal() parses back to the same integer
-- (thousandths below 2^53), so reading the keys back loses nothing.
-- KEYS: 1 cpu allocated, 2 ram allocated, 3 workers hash, 4 leases sorted set.
local cpu_key, ram_key, workers_key, leases_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- 5500 -> "5.5", 2250 -> "2.25", 3000 -> "3" (same as Milli's Display in Rust).
local function decimal(milli)
  local whole = math.floor(milli / 1000)
  local frac = milli % 1000
  if frac == 0 then return string.format('%d', whole) end
  local digits = string.gsub(string.format('%03d', frac), '0+$', '')
  return string.format('%d', whole) .. '.' .. digits
end

local function milli(x)
  return math.floor(tonumber(x) * 1000 + 0.5)
end

-- A worker record's cost and start time, or nil for a record that is not our JSON (it is then
-- dropped). Records written by record() are read with three pattern matches (several times
-- cheaper than cjson.decode inside Redis); anything else goes through cjson.
local function cost_of(json)
  if string.sub(json, 1, 1) == '{' and string.sub(json, -1) == '}' then
    local c = string.match(json, '"cpu":(%d+%.?%d*)[,}]')
    local r = string.match(json, '"ram":(%d+%.?%d*)[,}]')
    local t = string.match(json, '"startedAt":(%d+)[,}]')
    if c and r and t then
      return milli(c), milli(r), tonumber(t)
    end
  end
  local ok, w = pcall(cjson.decode, json)
  if not ok or type(w) ~= 'table' or tonumber(w.cpu) == nil or tonumber(w.ram) == nil then
    return nil
  end
  return milli(w.cpu), milli(w.ram), tonumber(w.startedAt)
end

-- A JSON string: ids, types and host names need no escaping; anything that does goes to cjson.
local function json_string(s)
  if string.find(s, '[%c"\\]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

-- The worker record of docs/design.md §4, built as text (cjson.encode costs more than the rest
-- of an allocate). Same fields and number forms as before: {"workerId","type","cpu","ram",
-- "startedAt","expiresAt","host","pid"}.
local function record(id, kind, cpu, ram, started, expires, host, pid)
  return '{"workerId":' .. json_string(id) .. ',"type":' .. json_string(kind)
    .. ',"cpu":' .. decimal(cpu) .. ',"ram":' .. decimal(ram)
    .. ',"startedAt":' .. string.format('%d', started) .. ',"expiresAt":' .. string.format('%d', expires)
    .. ',"host":' .. json_string(host) .. ',"pid":' .. string.format('%d', tonumber(pid) or 0) .. '}'
end

-- The full recount, O(all workers): keeps exactly the records that are our JSON and have a lease
-- and the leases that have a record, and writes their sums.
local function recompute()
  local cpu, ram, kept = 0, 0, 0
  local flat = redis.call('HGETALL', workers_key)
  for i = 1, #flat, 2 do
    local c, r = cost_of(flat[i + 1])
    if c == nil or redis.call('ZSCORE', leases_key, flat[i]) == false then
      redis.call('HDEL', workers_key, flat[i])
    else
      cpu = cpu + c
      ram = ram + r
      kept = kept + 1
    end
  end
  if redis.call('ZCARD', leases_key) ~= kept then
    for _, id in ipairs(redis.call('ZRANGE', leases_key, 0, -1)) do
      if redis.call('HEXISTS', workers_key, id) == 0 then
        redis.call('ZREM', leases_key, id)
      end
    end
  end
  redis.call('SET', cpu_key, decimal(cpu))
  redis.call('SET', ram_key, decimal(ram))
  return cpu, ram
end

-- The running sums as stored, or nil when they cannot be trusted: a key is missing or not a
-- number, or the hash and the sorted set differ in size (someone edited one of them by hand).
local function stored_sums()
  local cpu, ram = redis.call('GET', cpu_key), redis.call('GET', ram_key)
  if not cpu or not ram or tonumber(cpu) == nil or tonumber(ram) == nil then return nil end
  if redis.call('HLEN', workers_key) ~= redis.call('ZCARD', leases_key) then return nil end
  return milli(cpu), milli(ram)
end

-- Writes the running sums back.
local function store(cpu, ram)
  redis.call('SET', cpu_key, decimal(cpu))
  redis.call('SET', ram_key, decimal(ram))
end

-- Drops expired leases and returns the allocated sums (thousandths) of the live ones:
-- O(1) + O(expired) while the stored sums are trustworthy, the full recount otherwise.
local function sweep()
  local cpu, ram = stored_sums()
  -- ZCOUNT first: an integer reply costs far less than an (empty) array reply in a script.
  local expired = {}
  if redis.call('ZCOUNT', leases_key, '-inf', now) > 0 then
    expired = redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)
  end
  if #expired > 0 then
    for _, id in ipairs(expired) do
      if cpu ~= nil then
        local json = redis.call('HGET', workers_key, id)
        local c, r = nil, nil
        if json then c, r = cost_of(json) end
        if c == nil then
          cpu = nil -- a lease without a readable record: recount below
        else
          cpu, ram = cpu - c, ram - r
        end
      end
      redis.call('HDEL', workers_key, id)
    end
    redis.call('ZREMRANGEBYSCORE', leases_key, '-inf', now)
    if cpu ~= nil then store(cpu, ram) end
  end
  if cpu == nil or cpu < 0 or ram < 0 then return recompute() end
  return cpu, ram
end
