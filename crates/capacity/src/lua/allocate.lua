-- allocate: take a lease for one worker if its cost fits what the server has left. Also the switch
-- of an OCR worker from one type to another: the same script with the new type.
-- Invariant: check and add happen in this one script, so no interleaving of any number of
-- processes can push the allocated sums above the usable budget. Re-allocating a worker id that
-- already holds a lease replaces it (its old cost is not counted twice): the old lease is dropped
-- and the new one added in the same step, or the call is refused and the old lease is left exactly
-- as it was. No other process ever sees the worker with no lease or with both costs counted. An
-- expired old lease counts for nothing (sweep() already gave its capacity back).
-- ARGV: 1 worker id, 2 type, 3 cpu (milli), 4 ram (milli), 5 usable cpu (milli),
--       6 usable ram (milli), 7 lease ttl (ms), 8 host, 9 pid
-- Returns {1, expires_at_ms, cpu_after, ram_after} or {0, 'cpu'|'ram', need, available}; cpu and ram
-- are what the server would hold without this worker's current lease.
local id, kind = ARGV[1], ARGV[2]
local need_cpu, need_ram = tonumber(ARGV[3]), tonumber(ARGV[4])
local usable_cpu, usable_ram = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])

local cpu, ram = sweep()
local started = now
local previous = redis.call('HGET', workers_key, id)
if previous then
  local c, r, t = cost_of(previous)
  if c ~= nil then
    -- What the server would hold without this worker's current lease.
    cpu = cpu - c
    ram = ram - r
    started = t or now
  end
end

if cpu + need_cpu > usable_cpu then
  return {0, 'cpu', need_cpu, math.max(usable_cpu - cpu, 0)}
end
if ram + need_ram > usable_ram then
  return {0, 'ram', need_ram, math.max(usable_ram - ram, 0)}
end

local expires = now + ttl
-- HSET overwrites the old record: old lease out, new lease in, in the same step.
redis.call('HSET', workers_key, id, record(id, kind, need_cpu, need_ram, started, expires, ARGV[8], ARGV[9]))
redis.call('ZADD', leases_key, expires, id)
store(cpu + need_cpu, ram + need_ram)
return {1, expires, cpu + need_cpu, ram + need_ram}
