-- status: what the server has allocated right now, after dropping expired leases.
-- Invariant: the sums returned are exactly those of the live worker records returned with them:
-- status always recounts in full (O(all workers)) and writes the recount back, so a running sum
-- that had drifted (a hand edit of the keys) is repaired by the next status call.
-- Returns {cpu_milli, ram_milli, now_ms, record json, record json, ...}.
sweep()
local cpu, ram = recompute()
local result = {cpu, ram, now}
for _, json in ipairs(redis.call('HVALS', workers_key)) do
  table.insert(result, json)
end
return result
