-- live_servers: the servers whose registry entry (register_server.lua) has not expired.
-- Invariant: read-only; a server is listed iff its expiry is at or after now on the Redis clock,
-- so a server that stopped refreshing drops out within its ttl even before anyone sweeps the set.
-- KEYS: 1 the servers sorted set. Returns the members ("" for the default server).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
