-- Enqueue a batch of jobs atomically.
-- ARGV[1] key prefix "<prefix>:{<slot>}"; ARGV[2] end LSN (16 hex) of the last commit this batch
-- completes, or ""; ARGV[3] the batch's last arrival stamp; ARGV[4] number of jobs n;
-- ARGV[5] number of commits c; ARGV[6] number of ordering keys k; ARGV[7] the name of the batch
-- that must have been applied just before this one ('' = no condition: the reader had nothing
-- in flight), ARGV[8] this batch's name; then c pairs: commit LSN (16 hex), jobs of that commit
-- in the batch; then per ordering key: key, its job count m, its best (lowest) score, and its m
-- list entries in commit order, "<score>:<enqueued ms>:<commit lsn 16 hex>:<p>:<job body>",
-- pushed as they come (one RPUSH per key; nothing is built or parsed per job here).
-- The client (the reader: the queue's single writer, fenced by the batch chain) gives each job
-- an arrival stamp: its estimate of Redis's clock in ms * 256, made strictly increasing from
-- meta's `stamp` (read once per JobQueue, stored back here as the maximum), so jobs of one
-- priority are served in arrival order; and the score stamp + p * A * 256 (A: aging in ms per
-- priority level). A job of priority p therefore sorts exactly like a priority-0 job that arrived
-- p * A ms later: once it has waited p * A ms nothing enqueued after that can overtake it (the
-- bounded wait).
-- A key's place in `ready` is its head job's score (or lower: a later, more urgent job lifts the
-- whole key, which keeps per-key order and lets urgent work through sooner). A key that is
-- claimed, waiting out a retry backoff or dead is not in `ready`: the lift is remembered in
-- `lift` and applied when it goes back.
-- The checkpoint's state is per commit: `left` counts, per commit LSN, the list entries of that
-- commit not yet folded, and `pending` holds the commit LSNs whose count is above zero.
local p = ARGV[1]
local n, nc, nk = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local meta = p .. ':meta'
-- A batch sent while its predecessor was in flight runs only after that one was applied: if
-- the predecessor failed, applying this one would put its jobs (and its enqueued end, which a
-- new reader session skips to) before the predecessor's, which the reader then enqueues again.
-- A queue without an epoch lost its data (FLUSHALL, a restart without persistence): the batch
-- is applied as any would be, and the reader's next look at the epoch sees the loss and
-- replays everything (workers claim nothing meanwhile).
local chain = ARGV[7] ~= '' and redis.call('HMGET', meta, 'batch', 'epoch') or nil
if chain and chain[2] and chain[1] ~= ARGV[7] then
  return redis.error_reply('WALFOLD batch ' .. ARGV[8] .. ' refused: the batch before it (' ..
                           ARGV[7] .. ') was not applied')
end
local last = redis.call('HINCRBY', meta, 'seq', n)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready, pending, left, lift = p .. ':ready', p .. ':pending', p .. ':left', p .. ':lift'
local fmt = string.format
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): variadic calls take 1000 pairs.
local function variadic(cmd, key, list, step)
  local chunk = 1000 * step
  for j = 1, #list, chunk do redis.call(cmd, key, unpack(list, j, math.min(j + chunk - 1, #list))) end
end
-- The commits' counts: one HMGET for their current counts (a commit split over batches, or
-- enqueued again, has one), one HSET of the new counts, one ZADD of the new commits.
local i = 9
local lsns, counts = {}, {}
for c = 1, nc do
  lsns[c] = ARGV[i]
  counts[c] = tonumber(ARGV[i + 1])
  i = i + 2
end
local set, new, since = {}, {}, {}
local nows = fmt('%d', now)
for j = 1, nc, 1000 do
  local cur = redis.call('HMGET', left, unpack(lsns, j, math.min(j + 999, nc)))
  for x = 1, #cur do
    local c = j + x - 1
    if cur[x] then
      counts[c] = counts[c] + tonumber(cur[x])
    else
      new[#new + 1] = '0'
      new[#new + 1] = lsns[c]
      since[#since + 1] = lsns[c]
      since[#since + 1] = nows
    end
    set[#set + 1] = lsns[c]
    set[#set + 1] = fmt('%d', counts[c])
  end
end
variadic('HSET', left, set, 2)
variadic('ZADD', pending, new, 2)
variadic('HSET', p .. ':since', since, 2)
-- Where each key stands, learned once per key: RPUSH returning the number pushed means the key
-- had no jobs, and a key without jobs is in none of ready, active, delayed, dead (claim only
-- takes keys with jobs, ack drops a key whose list it empties, purge deletes the list with the
-- dead entry), so it goes to ready with its best score. A key that had jobs is in exactly one of
-- them: busy (claimed: `owner` names its fence; waiting out a backoff: in `delayed`; dead: in
-- `dead`; then the lift is recorded) or else in ready (ZADD LT lowers its score if this batch
-- has a more urgent job). Asking the busy sets (nearly all answers nil) costs a fraction of
-- asking `ready` (ZMSCORE formats every score it returns as a double: ~2 us per key).
local to_ready, nr = {}, 0
local had, had_best, nh = {}, {}, 0
-- Scores (strings from the client, never Lua numbers: Redis would format those with '%.17g').
local function ready_add(score, key)
  to_ready[nr + 1] = score
  to_ready[nr + 2] = key
  nr = nr + 2
  if nr == 2000 then
    redis.call('ZADD', ready, 'LT', unpack(to_ready, 1, nr))
    nr = 0
  end
end
local function place(from, to)
  local own = redis.call('HMGET', p .. ':owner', unpack(had, from, to))
  local wait = redis.call('ZMSCORE', p .. ':delayed', unpack(had, from, to))
  local gone = redis.call('HMGET', p .. ':dead', unpack(had, from, to))
  local busy, busy_best, nb = {}, {}, 0
  for j = from, to do
    local x = j - from + 1
    if own[x] or wait[x] or gone[x] then
      nb = nb + 1
      busy[nb] = had[j]
      busy_best[nb] = had_best[j]
    else
      ready_add(had_best[j], had[j])
    end
  end
  if nb == 0 then return end
  local cur = redis.call('HMGET', lift, unpack(busy, 1, nb))
  local set = {}
  for j = 1, nb do
    if (not cur[j]) or tonumber(cur[j]) > tonumber(busy_best[j]) then
      set[#set + 1] = busy[j]
      set[#set + 1] = busy_best[j]
    end
  end
  if #set > 0 then redis.call('HSET', lift, unpack(set)) end
end
for _ = 1, nk do
  local key, m, best = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  i = i + 3
  local list = p .. ':k:' .. key
  local len
  for j = i, i + m - 1, 1000 do
    len = redis.call('RPUSH', list, unpack(ARGV, j, math.min(j + 999, i + m - 1)))
  end
  i = i + m
  if len == m then
    ready_add(best, key)
  else
    nh = nh + 1
    had[nh] = key
    had_best[nh] = best
  end
end
for j = 1, nh, 1000 do place(j, math.min(j + 999, nh)) end
if nr > 0 then redis.call('ZADD', ready, 'LT', unpack(to_ready, 1, nr)) end
local stamp = redis.call('HGET', meta, 'stamp')
if (not stamp) or tonumber(stamp) < tonumber(ARGV[3]) then
  redis.call('HSET', meta, 'stamp', ARGV[3], 'batch', ARGV[8])
else
  redis.call('HSET', meta, 'batch', ARGV[8])
end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', meta, 'enqueued_end_lsn')
  if (not cur) or cur < ARGV[2] then
    redis.call('HSET', meta, 'enqueued_end_lsn', ARGV[2])
  end
end
return last
