-- rebalance_lock: take or keep the pool's rebalancer lock.
-- Invariant: at most one owner holds `worker_pool:lock` (or `worker_pool:{x}:lock`) at a time;
-- the owner extends it on every rebalance, and a crashed owner's lock expires after the TTL so
-- another pool process can take over. Two pool processes for one server never both rebalance.
-- KEYS: 1 lock key. ARGV: 1 owner id, 2 ttl (ms). Returns 1 if ARGV[1] holds the lock now, else 0.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
