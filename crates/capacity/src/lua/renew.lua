-- renew: the heartbeat of a lease holder.
-- Invariant: a lease is only extended while it is still live; once it has expired (and its
-- capacity may already belong to someone else) renew answers "lost" and changes nothing, so the
-- holder must allocate again through the checked path.
-- ARGV: 1 worker id, 2 lease ttl (ms). Returns {1, expires_at_ms} or {0}.
local id, ttl = ARGV[1], tonumber(ARGV[2])
sweep()
local json = redis.call('HGET', workers_key, id)
if not json then
  return {0}
end
local c, _, _ = cost_of(json)
if c == nil then
  -- Not our JSON (a hand edit): it was never counted; the holder allocates again.
  redis.call('HDEL', workers_key, id)
  redis.call('ZREM', leases_key, id)
  return {0}
end
local expires = now + ttl
local renewed, n = string.gsub(json, '"expiresAt":%d+', '"expiresAt":' .. string.format('%d', expires), 1)
if n ~= 1 then
  -- Not written by record(): rewrite it through cjson.
  local w = cjson.decode(json)
  w.expiresAt = expires
  renewed = cjson.encode(w)
end
redis.call('HSET', workers_key, id, renewed)
redis.call('ZADD', leases_key, expires, id)
return {1, expires}
