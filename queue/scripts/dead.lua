-- Dead letters (walfold queue dead retry|purge). ARGV[1] prefix, ARGV[2] 'retry' or 'purge',
-- ARGV[3] ordering key. Only a key that is in P:dead is touched; returns -1 when it is not.
-- A dead key is detached (ack.lua): its jobs are in its own list P:k:<key>, its unit "k:<key>".
-- retry: the key leaves `dead`, its attempt counter is reset and it goes back to `ready` with
--   its head job's score (lifted as enqueue.lua recorded), jobs and order unchanged. Returns 0.
-- purge: every job of the key is dropped and taken off its commit's count in `left` (a commit
--   whose count reaches zero leaves `pending`: the checkpoint moves past it, and those changes
--   are lost from the read model until a repair); the key rejoins its lane. Returns the number of
--   jobs dropped.
local p, op, key = ARGV[1], ARGV[2], ARGV[3]
local dead = p .. ':dead'
if redis.call('HEXISTS', dead, key) == 0 then return -1 end
redis.call('HDEL', dead, key)
redis.call('HDEL', p .. ':attempts', key)
local unit = 'k:' .. key
local list = p .. ':' .. unit
if op == 'retry' then
  local head = redis.call('LINDEX', list, 0)
  if head then
    local score = tonumber(string.match(head, '^(%d+)'))
    local l = redis.call('HGET', p .. ':lift', unit)
    if l and tonumber(l) < score then score = tonumber(l) end
    redis.call('ZADD', p .. ':ready', score, unit)
  end
  redis.call('HDEL', p .. ':lift', unit)
  return 0
end
local jobs = redis.call('LRANGE', list, 0, -1)
local per_commit = {}
for _, e in ipairs(jobs) do
  local lsn = string.match(e, '^%d+:%d+:(%x+):')
  if lsn then per_commit[lsn] = (per_commit[lsn] or 0) + 1 end
end
for lsn, c in pairs(per_commit) do
  if redis.call('HINCRBY', p .. ':left', lsn, -c) <= 0 then
    redis.call('HDEL', p .. ':left', lsn)
    redis.call('HDEL', p .. ':since', lsn)
    redis.call('ZREM', p .. ':pending', lsn)
  end
end
redis.call('DEL', list)
redis.call('HDEL', p .. ':lift', unit)
local lane = redis.call('HGET', p .. ':detached', key)
if lane then
  redis.call('HDEL', p .. ':detached', key)
  if redis.call('HINCRBY', p .. ':dlanes', lane, -1) <= 0 then redis.call('HDEL', p .. ':dlanes', lane) end
end
if #jobs > 0 then redis.call('HINCRBY', p .. ':meta', 'done', #jobs) end
return #jobs
