-- release: give a worker's capacity back.
-- Invariant: idempotent; releasing an unknown or already expired worker id changes nothing but
-- the sweep of expired leases. Returns 1 if a live lease was removed, else 0.
-- ARGV: 1 worker id.
local id = ARGV[1]
sweep()
local removed = redis.call('HDEL', workers_key, id)
redis.call('ZREM', leases_key, id)
recompute()
return removed
