-- status: what the current rolling window holds, for logs and operators.
-- Invariant: reading status changes nothing but pruning entries that already left the window
-- (which every other script would do anyway) and the state hash that mirrors them.
-- Returns {requests in window, tokens in window, cooldown remaining ms (0 if none), now ms}.
local st = load_state()
prune(st, 0)
keep(st)
save_state(st)
local until_ms = tonumber(redis.call('GET', cooldown_key) or '0') or 0
return {st.n, st.ug + st.ux, math.max(until_ms - now, 0), now}
