-- register_server: a server says it is alive in the registry of servers (the sorted set `servers`,
-- member = SERVER_ID, "" for the default un-namespaced server, score = expiry in ms on the Redis
-- clock), so registre-api, registre-monitor and registrectl find every server without SCAN.
-- Invariant: after the call the member's expiry is now + ttl (Redis clock, so hosts with skewed
-- clocks agree), and no member whose expiry is past remains (each call sweeps them), so the set
-- holds only servers that refreshed within their ttl. O(log n) + O(expired).
-- KEYS: 1 the servers sorted set. ARGV: 1 server id ("" for the default server), 2 ttl in ms.
-- Returns the Redis time in ms.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
