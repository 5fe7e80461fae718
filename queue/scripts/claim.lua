-- Claim up to ARGV[2] units (a lane "l:<n>" or a detached key "k:<key>", see enqueue.lua), the
-- most urgent first, with up to ARGV[3] jobs each, under a lease of ARGV[4] ms; ARGV[5] the queue format this build reads (a queue marked with another
-- one is not touched: returns {-1, its format}), ARGV[6] the format of an unmarked queue. First, units whose lease expired and detached keys whose retry backoff is
-- over are put back in `ready` (their jobs keep their scores, so priority and per-key order
-- survive a dead worker and a retry). Nothing is claimed while the queue is paused (`walfold queue
-- pause`: meta field `paused`) or has no epoch. Dead keys (P:dead) are never in `ready`.
-- Returns {fence, {unit1, unit2, ...}}; fence is the token the ack must show. The client then
-- reads each unit's first ARGV[3] list entries with plain LRANGEs (pipelined, outside Lua:
-- copying the entries through Lua strings cost more than the rest of the claim) and groups them
-- by ordering key. That read sees what this script would have: only the owner of a unit removes
-- or moves its entries, enqueue only appends (jobs appended meanwhile are the unit's next jobs,
-- in order), and an ack or a requeue of another owner is refused by the fence.
local p = ARGV[1]
local max_keys, lease = tonumber(ARGV[2]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready, active, owner, lift = p .. ':ready', p .. ':active', p .. ':owner', p .. ':lift'
local meta = redis.call('HMGET', p .. ':meta', 'epoch', 'paused', 'format')
if meta[3] and meta[3] ~= ARGV[5] then return {-1, meta[3]} end
-- Unmarked: written before the marker (format ARGV[6]); a reader of this format marks it when
-- it adopts it (empty), so claim nothing until then.
if meta[1] and not meta[3] then return {-1, ARGV[6]} end
-- No epoch: Redis lost walfold's data and the reader has not rebuilt the queue yet. Folding a
-- job now could put a newer change of a key before an older one that is about to be replayed.
if not meta[1] then return {0, {}} end

local function requeue(unit)
  local head = redis.call('LINDEX', p .. ':' .. unit, 0)
  if head then
    local score = tonumber(string.match(head, '^(%d+)'))
    local l = redis.call('HGET', lift, unit)
    if l and tonumber(l) < score then score = tonumber(l) end
    redis.call('ZADD', ready, score, unit)
  end
  redis.call('HDEL', lift, unit)
end

local expired = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, 1000)
for _, unit in ipairs(expired) do
  redis.call('ZREM', active, unit)
  redis.call('HDEL', owner, unit)
  requeue(unit)
end
local delayed = p .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, unit in ipairs(due) do
  redis.call('ZREM', delayed, unit)
  requeue(unit)
end
if meta[2] then return {0, {}} end

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
-- One ZADD active and one HSET owner for all the claimed units (1000 at a time: unpack() is
-- bounded by Lua's C stack).
local out, act, own, na = {}, {}, {}, 0
local deadline = string.format('%d', now + lease)  -- strings: see enqueue.lua
local fence_s = string.format('%d', fence)
-- A unit in `ready` has jobs (enqueue puts it there with its first ones, ack takes it out with
-- its last).
for i = 1, #popped, 2 do
  local unit = popped[i]
  act[na + 1] = deadline
  act[na + 2] = unit
  own[na + 1] = unit
  own[na + 2] = fence_s
  na = na + 2
  out[#out + 1] = unit
  if na == 2000 then
    redis.call('ZADD', active, unpack(act, 1, na))
    redis.call('HSET', owner, unpack(own, 1, na))
    na = 0
  end
end
if na > 0 then
  redis.call('ZADD', active, unpack(act, 1, na))
  redis.call('HSET', owner, unpack(own, 1, na))
end
return {fence, out}
