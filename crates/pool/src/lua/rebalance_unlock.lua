-- rebalance_unlock: give the rebalancer lock back on shutdown.
-- Invariant: only the current owner can delete the lock (a process whose lock expired and was
-- taken over never removes the new owner's). KEYS: 1 lock key. ARGV: 1 owner id.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
