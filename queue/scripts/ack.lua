-- Settle claimed keys: acknowledge the jobs done, and give the key back, or hold it for a
-- retry, or move it to the dead letters.
-- ARGV[1] prefix, ARGV[2] fence token from the claim, ARGV[3] retry initial backoff ms,
-- ARGV[4] retry maximum backoff ms, ARGV[5] attempts before a poison job is dead, ARGV[6] number
-- of keys; then per key: key, jobs done (removed from the head of its list), outcome ('' give
-- back, 'retry' transient failure of the head job, 'poison' the head job cannot be folded),
-- reason (text), jitter (0..1000000, uniform random from the worker), member count m, then m
-- pending members to remove.
-- Jobs done reset the key's attempt counter (it counts failures of the current head job).
-- A failure adds one attempt; the key waits in `delayed` for a backoff with full jitter,
-- jitter * min(max, initial * 2^(attempts - 1)), then claim.lua gives it back. A poison failure
-- that reaches the attempt limit moves the key to `dead` instead: it stays out of `ready` (later
-- jobs of that key wait behind it), its list and pending members stay (the checkpoint does not
-- pass it) until `walfold queue dead retry` or `purge`.
-- A key whose owner is no longer this fence (its lease expired and another worker claimed it)
-- is rejected untouched. Returns {rejected keys, {dead key, attempts, ...},
-- {delayed key, delay ms, attempts, ...}}.
local p, fence = ARGV[1], ARGV[2]
local initial, maxb, max_attempts = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local ready, active, owner, pending = p .. ':ready', p .. ':active', p .. ':owner', p .. ':pending'
local lift, attempts, delayed, dead = p .. ':lift', p .. ':attempts', p .. ':delayed', p .. ':dead'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rejected, died, delays = {}, {}, {}
local i = 7
for _ = 1, n do
  local key, done, outcome, reason = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local jitter, m = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  i = i + 6
  if redis.call('HGET', owner, key) == fence then
    local list = p .. ':k:' .. key
    if done > 0 then
      redis.call('LTRIM', list, done, -1)
      redis.call('HDEL', attempts, key)
    end
    for j = i, i + m - 1 do redis.call('ZREM', pending, ARGV[j]) end
    redis.call('ZREM', active, key)
    redis.call('HDEL', owner, key)
    local head = redis.call('LINDEX', list, 0)
    if head and outcome ~= '' then
      local a = redis.call('HINCRBY', attempts, key, 1)
      if outcome == 'poison' and a >= max_attempts then
        local lsn = ''
        local mlen, rest = string.match(head, '^%d+:%d+:%d+:(%d+):()')
        if mlen then lsn = string.sub(head, rest, rest + 15) end
        redis.call('HSET', dead, key, cjson.encode({attempts = a, reason = reason, lsn = lsn,
                                                    at_ms = now}))
        died[#died + 1] = key
        died[#died + 1] = a
      else
        local cap = initial * 2 ^ math.min(a - 1, 40)
        if cap > maxb then cap = maxb end
        local delay = math.floor(cap * jitter / 1000000)
        redis.call('ZADD', delayed, now + delay, key)
        delays[#delays + 1] = key
        delays[#delays + 1] = delay
        delays[#delays + 1] = a
      end
    elseif head then
      local score = tonumber(string.match(head, '^(%d+)'))
      local l = redis.call('HGET', lift, key)
      if l and tonumber(l) < score then score = tonumber(l) end
      redis.call('ZADD', ready, string.format('%.0f', score), key)
      redis.call('HDEL', lift, key)
    else
      redis.call('HDEL', lift, key)
      redis.call('HDEL', attempts, key)
    end
  else
    rejected[#rejected + 1] = key
  end
  i = i + m
end
return {rejected, died, delays}
