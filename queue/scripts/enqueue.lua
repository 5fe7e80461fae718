-- Enqueue a batch of jobs atomically (queue format 3: lanes).
-- ARGV[1] key prefix "<prefix>:{<slot>}"; ARGV[2] end LSN (16 hex) of the last commit this batch
-- completes, or ""; ARGV[3] the batch's last arrival stamp; ARGV[4] number of jobs n;
-- ARGV[5] number of commits c; ARGV[6] number of lane groups g; ARGV[7] the name of the batch
-- that must have been applied just before this one ('' = no condition: the reader had nothing
-- in flight), ARGV[8] this batch's name; ARGV[9] the number of lanes the client hashed the keys
-- into (meta's `lanes` must say the same); then c pairs: commit LSN (16 hex), jobs of that commit
-- in the batch; then per lane: its number, its job count m, its best (lowest) score, and its m
-- list entries in arrival order, "<score>:<enqueued ms>:<commit lsn 16 hex>:<p>:<key length>:
-- <key><job body>" (no separator after the key), pushed as they come: one RPUSH per lane,
-- nothing is built or parsed per job here.
-- The client hashes every ordering key into one of ARGV[9] lanes (FNV-1a, job_queue.cpp), so a
-- key's jobs follow each other in its lane's list: per-key order is the lane's order.
-- The client (the reader: the queue's single writer, fenced by the batch chain) gives each job
-- an arrival stamp: its estimate of Redis's clock in ms * 256, made strictly increasing from
-- meta's `stamp` (read once per JobQueue, stored back here as the maximum), so jobs of one
-- priority are served in arrival order; and the score stamp + p * A * 256 (A: aging in ms per
-- priority level). A job of priority p therefore sorts exactly like a priority-0 job that arrived
-- p * A ms later: once it has waited p * A ms nothing enqueued after that can overtake it (the
-- bounded wait).
-- A unit (a lane "l:<n>", or a detached key "k:<key>") is in `ready` at its head job's score (or
-- lower: a later, more urgent job lifts the whole unit). A unit that is claimed, waiting out a
-- retry backoff or dead is not in `ready`: the lift is remembered in `lift` and applied when it
-- goes back.
-- Detached keys (a key that failed: retried or dead, see ack.lua) have their own list P:k:<key>
-- until it empties; their jobs go there, not to their lane (`detached`: key -> lane, `dlanes`:
-- lane -> number of its detached keys, so the common case costs one EXISTS per batch).
-- The checkpoint's state is per commit: `left` counts, per commit LSN, the list entries of that
-- commit not yet folded, and `pending` holds the commit LSNs whose count is above zero.
local p = ARGV[1]
local n, nc, ng = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local meta = p .. ':meta'
-- A batch sent while its predecessor was in flight runs only after that one was applied: if
-- the predecessor failed, applying this one would put its jobs (and its enqueued end, which a
-- new reader session skips to) before the predecessor's, which the reader then enqueues again.
-- A queue without an epoch lost its data (FLUSHALL, a restart without persistence): the batch
-- is applied as any would be, and the reader's next look at the epoch sees the loss and
-- replays everything (workers claim nothing meanwhile).
local m0 = redis.call('HMGET', meta, 'batch', 'epoch', 'lanes')
if m0[3] and m0[3] ~= ARGV[9] then
  return redis.error_reply('WALFOLD lanes: the queue ' .. p .. ' has ' .. m0[3] ..
                           ' lanes and this walfold hashes keys into ' .. ARGV[9])
end
if ARGV[7] ~= '' and m0[2] and m0[1] ~= ARGV[7] then
  return redis.error_reply('WALFOLD batch ' .. ARGV[8] .. ' refused: the batch before it (' ..
                           ARGV[7] .. ') was not applied')
end
local last = redis.call('HINCRBY', meta, 'seq', n)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready, pending, left, lift = p .. ':ready', p .. ':pending', p .. ':left', p .. ':lift'
local owner = p .. ':owner'
local fmt = string.format
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): variadic calls take 1000 pairs.
local function variadic(cmd, key, list, step)
  local chunk = 1000 * step
  for j = 1, #list, chunk do redis.call(cmd, key, unpack(list, j, math.min(j + chunk - 1, #list))) end
end
-- The commits' counts: one HMGET for their current counts (a commit split over batches, or
-- enqueued again, has one), one HSET of the new counts, one ZADD of the new commits.
local i = 10
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

-- Lanes with detached keys (rare): their groups are split by key below.
local split = nil
if redis.call('EXISTS', p .. ':dlanes') == 1 then
  local lanes, at = {}, i
  for g = 1, ng do
    lanes[g] = ARGV[at]
    at = at + 3 + tonumber(ARGV[at + 1])
  end
  split = {}
  for j = 1, ng, 1000 do
    local d = redis.call('HMGET', p .. ':dlanes', unpack(lanes, j, math.min(j + 999, ng)))
    for x = 1, #d do
      if d[x] then split[lanes[j + x - 1]] = true end
    end
  end
end

-- Where each unit stands: RPUSH returning the number pushed means the unit had no jobs, and a
-- unit without jobs is in none of ready, active, delayed, dead, so it goes to ready with its
-- best score. A unit that had jobs is claimed (`owner` names its fence), waiting out a backoff
-- (`delayed`: a detached key, or a lane whose claim failed as a whole; asked only when the set
-- exists, and nearly every answer is nil), dead (a detached key in `dead`) or else in ready.
-- Busy units get their lift recorded, the others ZADD LT.
local to_ready, nr = {}, 0
local had, had_best, nh = {}, {}, 0
-- Scores (strings from the client, never Lua numbers: Redis would format those with '%.17g').
local function ready_add(score, unit)
  to_ready[nr + 1] = score
  to_ready[nr + 2] = unit
  nr = nr + 2
  if nr == 2000 then
    redis.call('ZADD', ready, 'LT', unpack(to_ready, 1, nr))
    nr = 0
  end
end
local function push(unit, from, to, best)
  local len
  for j = from, to, 1000 do len = redis.call('RPUSH', p .. ':' .. unit, unpack(ARGV, j, math.min(j + 999, to))) end
  if len == to - from + 1 then
    ready_add(best, unit)
  else
    nh = nh + 1
    had[nh] = unit
    had_best[nh] = best
  end
end
local any_delayed = redis.call('EXISTS', p .. ':delayed') == 1
local function place(from, to)
  local own = redis.call('HMGET', owner, unpack(had, from, to))
  local wait = any_delayed and redis.call('ZMSCORE', p .. ':delayed', unpack(had, from, to)) or {}
  local busy, busy_best, nb = {}, {}, 0
  for j = from, to do
    local x = j - from + 1
    local unit = had[j]
    local held = own[x] or wait[x]
    if not held and string.byte(unit, 1) == 107 then  -- 'k': a detached key may be dead
      held = redis.call('HEXISTS', p .. ':dead', string.sub(unit, 3)) == 1
    end
    if held then
      nb = nb + 1
      busy[nb] = unit
      busy_best[nb] = had_best[j]
    else
      ready_add(had_best[j], unit)
    end
  end
  if nb == 0 then return end
  local cur = redis.call('HMGET', lift, unpack(busy, 1, nb))
  local s = {}
  for j = 1, nb do
    if (not cur[j]) or tonumber(cur[j]) > tonumber(busy_best[j]) then
      s[#s + 1] = busy[j]
      s[#s + 1] = busy_best[j]
    end
  end
  if #s > 0 then redis.call('HSET', lift, unpack(s)) end
end
-- One lane group whose lane has detached keys: each entry goes to its key's list if the key is
-- detached, else to the lane; order is kept within each.
local function split_group(lane, from, to)
  local keys, of, seen = {}, {}, {}
  for j = from, to do
    local e = ARGV[j]
    local a = string.find(e, ':', 1, true)
    local b = string.find(e, ':', a + 1, true)
    local c = string.find(e, ':', b + 18, true)
    local d = string.find(e, ':', c + 1, true)
    local len = tonumber(string.sub(e, c + 1, d - 1))
    local key = string.sub(e, d + 1, d + len)
    of[j] = key
    if not seen[key] then
      seen[key] = true
      keys[#keys + 1] = key
    end
  end
  local away = {}
  for j = 1, #keys, 1000 do
    local det = redis.call('HMGET', p .. ':detached', unpack(keys, j, math.min(j + 999, #keys)))
    for x = 1, #det do
      if det[x] then away[keys[j + x - 1]] = true end
    end
  end
  local groups, order = {}, {}
  for j = from, to do
    local unit = away[of[j]] and ('k:' .. of[j]) or ('l:' .. lane)
    local g = groups[unit]
    if not g then
      g = {}
      groups[unit] = g
      order[#order + 1] = unit
    end
    g[#g + 1] = ARGV[j]
  end
  for _, unit in ipairs(order) do
    local g = groups[unit]
    local best = nil
    for _, e in ipairs(g) do
      local s = string.match(e, '^(%d+)')
      if (not best) or tonumber(s) < tonumber(best) then best = s end
    end
    local len
    for j = 1, #g, 1000 do len = redis.call('RPUSH', p .. ':' .. unit, unpack(g, j, math.min(j + 999, #g))) end
    if len == #g then
      ready_add(best, unit)
    else
      nh = nh + 1
      had[nh] = unit
      had_best[nh] = best
    end
  end
end
for _ = 1, ng do
  local lane, m, best = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  i = i + 3
  if split and split[lane] then
    split_group(lane, i, i + m - 1)
  else
    push('l:' .. lane, i, i + m - 1, best)
  end
  i = i + m
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
