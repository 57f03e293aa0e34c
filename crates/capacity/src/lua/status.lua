-- status: what the server has allocated right now, after dropping expired leases.
-- Invariant: the sums returned are exactly those of the live worker records returned with them.
-- Returns {cpu_milli, ram_milli, now_ms, record json, record json, ...}.
local cpu, ram = sweep()
local result = {cpu, ram, now}
for _, json in ipairs(redis.call('HVALS', workers_key)) do
  table.insert(result, json)
end
return result
