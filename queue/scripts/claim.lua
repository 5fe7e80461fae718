-- Claim up to ARGV[2] ordering keys, the most urgent first, with up to ARGV[3] jobs each, under a
-- lease of ARGV[4] ms. Keys whose lease expired are put back first (their jobs keep their
-- scores, so priority and per-key order survive a dead worker).
-- Returns {fence, {key1, {jobs...}, key2, {jobs...}, ...}}; fence is the token the ack must show.
local p = ARGV[1]
local max_keys, max_jobs, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready, active, owner = p .. ':ready', p .. ':active', p .. ':owner'
-- No epoch: Redis lost walfold's data and the reader has not rebuilt the queue yet. Folding a
-- job now could put a newer change of a key before an older one that is about to be replayed.
if not redis.call('HGET', p .. ':meta', 'epoch') then return {0, {}} end

local expired = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, 1000)
for _, key in ipairs(expired) do
  redis.call('ZREM', active, key)
  redis.call('HDEL', owner, key)
  local head = redis.call('LINDEX', p .. ':k:' .. key, 0)
  if head then
    local score = tonumber(string.match(head, '^(%d+)|'))
    local lift = redis.call('HGET', p .. ':lift', key)
    if lift and tonumber(lift) < score then score = tonumber(lift) end
    redis.call('ZADD', ready, string.format('%.0f', score), key)
  end
  redis.call('HDEL', p .. ':lift', key)
end

local popped = redis.call('ZPOPMIN', ready, max_keys)
if #popped == 0 then return {0, {}} end
-- Fence tokens only grow, even across a Redis that lost its data (the counter restarts): they
-- are floored at Redis's clock in microseconds, so a worker holding a token from before the loss
-- can never match a newer claim.
local fence = redis.call('HINCRBY', p .. ':meta', 'fence', 1)
local floor_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if fence < floor_us then
  fence = floor_us
  redis.call('HSET', p .. ':meta', 'fence', string.format('%.0f', fence))
end
local out = {}
for i = 1, #popped, 2 do
  local key = popped[i]
  local jobs = redis.call('LRANGE', p .. ':k:' .. key, 0, max_jobs - 1)
  if #jobs > 0 then
    redis.call('ZADD', active, now + lease, key)
    redis.call('HSET', owner, key, fence)
    out[#out + 1] = key
    out[#out + 1] = jobs
  end
end
return {fence, out}
