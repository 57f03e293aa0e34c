-- release: give a worker's capacity back.
-- Invariant: idempotent; releasing an unknown or already expired worker id changes nothing but
-- the sweep of expired leases. The allocated sums lose exactly the released record's cost (O(1));
-- a record that is not our JSON was never counted, so it is dropped without touching them.
-- Returns 1 if a live lease was removed, else 0.
-- ARGV: 1 worker id.
local id = ARGV[1]
local cpu, ram = sweep()
local json = redis.call('HGET', workers_key, id)
if not json then
  redis.call('ZREM', leases_key, id)
  return 0
end
local c, r = cost_of(json)
redis.call('HDEL', workers_key, id)
redis.call('ZREM', leases_key, id)
if c ~= nil then
  store(cpu - c, ram - r)
end
return 1
