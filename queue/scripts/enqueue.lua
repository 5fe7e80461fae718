-- Enqueue a batch of jobs atomically.
-- ARGV[1] key prefix "<prefix>:{<slot>}"; ARGV[2] end LSN (16 hex) of the last commit this batch
-- completes, or ""; ARGV[3] number of jobs n; ARGV[4] aging in ms per priority level (A); then
-- n groups of 4: ordering key, priority p (0..255), pending member "<commit lsn hex>:<key>",
-- job body.
-- Each job gets an arrival stamp: Redis's clock in ms * 256, made strictly increasing (so jobs
-- of one priority are served in arrival order), and the score stamp + p * A * 256. A job of
-- priority p therefore sorts exactly like a priority-0 job that arrived p * A ms later: once it
-- has waited p * A ms nothing enqueued after that can overtake it (the bounded wait).
-- It is pushed on its key's list as "<score>:<p>:<enqueued ms>:<member length>:<member><body>".
-- A key's place in `ready` is its head job's score (or lower: a later, more urgent job lifts the
-- whole key, which keeps per-key order and lets urgent work through sooner). A key that is
-- claimed, waiting out a retry backoff or dead is not in `ready`: the lift is remembered in
-- `lift` and applied when it goes back.
local p = ARGV[1]
local n, aging = tonumber(ARGV[3]), tonumber(ARGV[4])
local meta = p .. ':meta'
local last = redis.call('HINCRBY', meta, 'seq', n)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = tonumber(redis.call('HGET', meta, 'stamp') or '0')
if stamp < now * 256 then stamp = now * 256 - 1 end
local ready, pending, lift = p .. ':ready', p .. ':pending', p .. ':lift'
local nows = string.format('%.0f', now)
-- Where each key stands, learned once per batch: RPUSH returning 1 means the key had no jobs,
-- and a key without jobs is in none of ready, active, delayed, dead (claim only takes keys
-- with jobs, ack drops a key whose list it empties, purge deletes the list with the dead
-- entry), so it goes to ready with this job's score; otherwise it is in ready (ZSCORE says
-- where) or busy (claimed, delayed or dead: the lift is recorded). `to_ready` collects the
-- scores for one ZADD LT at the end, `members` the pending members for one ZADD per chunk.
local to_ready, busy, members = {}, {}, {}
local i = 5
for j = 1, n do
  local key, prio, member, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  stamp = stamp + 1
  local score = stamp + prio * aging * 256
  local s = string.format('%.0f', score)
  local len = redis.call('RPUSH', p .. ':k:' .. key,
                         s .. ':' .. prio .. ':' .. nows .. ':' .. #member .. ':' .. member .. body)
  members[j] = member
  local known = to_ready[key]
  if known then
    if score < known then to_ready[key] = score end
  elseif busy[key] then
    local l = redis.call('HGET', lift, key)
    if (not l) or tonumber(l) > score then redis.call('HSET', lift, key, s) end
  elseif len == 1 then
    to_ready[key] = score
  else
    local cur = redis.call('ZSCORE', ready, key)
    if cur then
      cur = tonumber(cur)
      to_ready[key] = score < cur and score or cur
    else
      busy[key] = true
      local l = redis.call('HGET', lift, key)
      if (not l) or tonumber(l) > score then redis.call('HSET', lift, key, s) end
    end
  end
end
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): chunks of 1000 pairs.
local args, na = {}, 0
for key, score in pairs(to_ready) do
  args[na + 1] = string.format('%.0f', score)
  args[na + 2] = key
  na = na + 2
  if na == 2000 then
    redis.call('ZADD', ready, 'LT', unpack(args, 1, na))
    na = 0
  end
end
if na > 0 then redis.call('ZADD', ready, 'LT', unpack(args, 1, na)) end
na = 0
for j = 1, n do
  args[na + 1] = 0
  args[na + 2] = members[j]
  na = na + 2
  if na == 2000 or j == n then
    redis.call('ZADD', pending, unpack(args, 1, na))
    na = 0
  end
end
if n > 0 then redis.call('HSET', meta, 'stamp', string.format('%.0f', stamp)) end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', meta, 'enqueued_end_lsn')
  if (not cur) or cur < ARGV[2] then
    redis.call('HSET', meta, 'enqueued_end_lsn', ARGV[2])
  end
end
return last
