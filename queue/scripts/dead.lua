-- Dead letters (walfold queue dead retry|purge). ARGV[1] prefix, ARGV[2] 'retry' or 'purge',
-- ARGV[3] ordering key. Only a key that is in P:dead is touched; returns -1 when it is not.
-- retry: the key leaves `dead`, its attempt counter is reset and it goes back to `ready` with
--   its head job's score (lifted as enqueue.lua recorded), jobs and order unchanged. Returns 0.
-- purge: every job of the key is dropped together with its pending member (the checkpoint
--   moves past them: those changes are lost from the read model until a repair). Returns the
--   number of jobs dropped.
local p, op, key = ARGV[1], ARGV[2], ARGV[3]
local dead = p .. ':dead'
if redis.call('HEXISTS', dead, key) == 0 then return -1 end
redis.call('HDEL', dead, key)
redis.call('HDEL', p .. ':attempts', key)
local list = p .. ':k:' .. key
if op == 'retry' then
  local head = redis.call('LINDEX', list, 0)
  if head then
    local score = tonumber(string.match(head, '^(%d+)'))
    local l = redis.call('HGET', p .. ':lift', key)
    if l and tonumber(l) < score then score = tonumber(l) end
    redis.call('ZADD', p .. ':ready', string.format('%.0f', score), key)
  end
  redis.call('HDEL', p .. ':lift', key)
  return 0
end
local jobs = redis.call('LRANGE', list, 0, -1)
for _, e in ipairs(jobs) do
  local mlen, rest = string.match(e, '^%d+:%d+:%d+:(%d+):()')
  if mlen then
    redis.call('ZREM', p .. ':pending', string.sub(e, rest, rest + tonumber(mlen) - 1))
  end
end
redis.call('DEL', list)
redis.call('HDEL', p .. ':lift', key)
return #jobs
