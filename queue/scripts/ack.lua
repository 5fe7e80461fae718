-- Acknowledge (or release) claimed keys. ARGV[1] prefix, ARGV[2] fence token from the claim,
-- ARGV[3] number of keys; then per key: key, jobs done (removed from the head of its list),
-- member count m, then m pending members to remove.
-- A key whose owner is no longer this fence (its lease expired and another worker claimed it)
-- is rejected untouched. Returns the rejected keys.
local p, fence = ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local ready, active, owner, pending = p .. ':ready', p .. ':active', p .. ':owner', p .. ':pending'
local rejected = {}
local i = 4
for _ = 1, n do
  local key, done, m = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  if redis.call('HGET', owner, key) == fence then
    local list = p .. ':k:' .. key
    if done > 0 then redis.call('LTRIM', list, done, -1) end
    for j = i, i + m - 1 do redis.call('ZREM', pending, ARGV[j]) end
    redis.call('ZREM', active, key)
    redis.call('HDEL', owner, key)
    local head = redis.call('LINDEX', list, 0)
    if head then
      local score = tonumber(string.match(head, '^(%d+)|'))
      local lift = redis.call('HGET', p .. ':lift', key)
      if lift and tonumber(lift) < score then score = tonumber(lift) end
      redis.call('ZADD', ready, string.format('%.0f', score), key)
    end
    redis.call('HDEL', p .. ':lift', key)
  else
    rejected[#rejected + 1] = key
  end
  i = i + m
end
return rejected
