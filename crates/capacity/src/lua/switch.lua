-- switch: move a worker's lease from one worker type to another (an OCR worker changing mode).
-- Invariant: in this one script the old lease is dropped and the new type's lease added, or the
-- switch is refused and the old lease is left exactly as it was; there is no moment, seen by any
-- other process, when the worker holds no lease or when both costs are counted, and the allocated
-- sums never exceed the usable budget. If the old lease had already expired, the new one is taken
-- through the same check, as allocate would.
-- ARGV: 1 worker id, 2 new type, 3 cpu (milli), 4 ram (milli), 5 usable cpu (milli),
--       6 usable ram (milli), 7 lease ttl (ms), 8 host, 9 pid
-- Returns {1, expires_at_ms, cpu_after, ram_after, had_lease (1|0)} or
--         {0, 'cpu'|'ram', need, available, had_lease (1|0)}.
local id, kind = ARGV[1], ARGV[2]
local need_cpu, need_ram = tonumber(ARGV[3]), tonumber(ARGV[4])
local usable_cpu, usable_ram = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])

local cpu, ram = sweep()
local started = now
local had = 0
local previous = redis.call('HGET', workers_key, id)
if previous then
  local c, r, t = cost_of(previous)
  if c ~= nil then
    -- What the server would hold without this worker's current lease.
    cpu = cpu - c
    ram = ram - r
    started = t or now
    had = 1
  end
end

if cpu + need_cpu > usable_cpu then
  return {0, 'cpu', need_cpu, math.max(usable_cpu - cpu, 0), had}
end
if ram + need_ram > usable_ram then
  return {0, 'ram', need_ram, math.max(usable_ram - ram, 0), had}
end

local expires = now + ttl
-- HSET overwrites the old record: old lease out, new lease in, in the same step.
redis.call('HSET', workers_key, id, record(id, kind, need_cpu, need_ram, started, expires, ARGV[8], ARGV[9]))
redis.call('ZADD', leases_key, expires, id)
store(cpu + need_cpu, ram + need_ram)
return {1, expires, cpu + need_cpu, ram + need_ram, had}
