-- publish_allocation: record this pool process's split and publish the server's allocation.
-- Invariant: `worker_pool:allocation` always holds the SUM of the splits of the live pool
-- processes of the pool key (each process's own part lives in the `...:allocation:processes`
-- hash with an expiry on the Redis clock; a crashed process's part is dropped once it expires),
-- so two ocr-pool processes on one SERVER_ID show e.g. 2 index / 2 acte of 4, never only the
-- last writer's 1 / 1 of 2. Recording the part and rewriting the sum happen in this one script.
-- KEYS: 1 allocation key, 2 processes hash.
-- ARGV: 1 process id, 2 index workers, 3 acte workers, 4 waiting index rows, 5 waiting acte rows,
--       6 updatedAt (ISO 8601), 7 ttl of the part in ms (0: withdraw this process's part).
-- Returns the allocation JSON written, or false when no live process is left (key deleted).
local allocation_key, processes_key = KEYS[1], KEYS[2]
local owner = ARGV[1]
local ttl = tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local queue = {index = tonumber(ARGV[4]), acte = tonumber(ARGV[5])}
if ttl > 0 then
  redis.call('HSET', processes_key, owner, cjson.encode({
    indexWorkers = tonumber(ARGV[2]), acteWorkers = tonumber(ARGV[3]), expiresAt = now + ttl,
  }))
else
  redis.call('HDEL', processes_key, owner)
  -- A withdrawing process did not count the queue: keep the last published counts.
  local previous = redis.call('GET', allocation_key)
  if previous then
    local ok, p = pcall(cjson.decode, previous)
    if ok and type(p) == 'table' and type(p.queue) == 'table' then
      queue = {index = tonumber(p.queue.index) or 0, acte = tonumber(p.queue.acte) or 0}
    end
  end
end

local index, acte, live = 0, 0, 0
local flat = redis.call('HGETALL', processes_key)
for i = 1, #flat, 2 do
  local ok, part = pcall(cjson.decode, flat[i + 1])
  if not ok or type(part) ~= 'table' or tonumber(part.expiresAt) == nil or tonumber(part.expiresAt) <= now then
    redis.call('HDEL', processes_key, flat[i])
  else
    index = index + (tonumber(part.indexWorkers) or 0)
    acte = acte + (tonumber(part.acteWorkers) or 0)
    live = live + 1
  end
end

if live == 0 then
  redis.call('DEL', allocation_key)
  return false
end
local json = cjson.encode({
  indexWorkers = index, acteWorkers = acte, totalWorkers = index + acte,
  queue = queue, updatedAt = ARGV[6],
})
redis.call('SET', allocation_key, json)
return json
