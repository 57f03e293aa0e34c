-- Prelude of every capacity script (prepended at build time, see lib.rs).
-- Invariant it keeps: after sweep(), `workers` and `leases` hold exactly the unexpired leases
-- (expiry measured on the Redis server's clock, so hosts with skewed clocks agree) and the two
-- allocated keys equal the sum of those leases' costs, recomputed from scratch in integer
-- thousandths, so they can never drift or leak what a crashed process held.
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

-- A worker record's cost, or nil for a record that is not our JSON (it is then dropped).
local function cost_of(json)
  local ok, w = pcall(cjson.decode, json)
  if not ok or type(w) ~= 'table' or tonumber(w.cpu) == nil or tonumber(w.ram) == nil then
    return nil
  end
  return milli(w.cpu), milli(w.ram), w
end

local function recompute()
  local cpu, ram = 0, 0
  local flat = redis.call('HGETALL', workers_key)
  for i = 1, #flat, 2 do
    local c, r = cost_of(flat[i + 1])
    if c == nil or redis.call('ZSCORE', leases_key, flat[i]) == false then
      redis.call('HDEL', workers_key, flat[i])
    else
      cpu = cpu + c
      ram = ram + r
    end
  end
  redis.call('SET', cpu_key, decimal(cpu))
  redis.call('SET', ram_key, decimal(ram))
  return cpu, ram
end

local function sweep()
  local expired = redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HDEL', workers_key, id)
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', leases_key, '-inf', now)
  end
  return recompute()
end
