-- allocate: take a lease for one worker if its cost fits what the server has left.
-- Invariant: check and add happen in this one script, so no interleaving of any number of
-- processes can push the allocated sums above the usable budget. Re-allocating a worker id that
-- already holds a lease replaces it (its old cost is not counted twice).
-- ARGV: 1 worker id, 2 type, 3 cpu (milli), 4 ram (milli), 5 usable cpu (milli),
--       6 usable ram (milli), 7 lease ttl (ms), 8 host, 9 pid
-- Returns {1, expires_at_ms, cpu_after, ram_after} or {0, 'cpu'|'ram', need, available}.
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
redis.call('HSET', workers_key, id, record(id, kind, need_cpu, need_ram, started, expires, ARGV[8], ARGV[9]))
redis.call('ZADD', leases_key, expires, id)
store(cpu + need_cpu, ram + need_ram)
return {1, expires, cpu + need_cpu, ram + need_ram}
