-- Settle claimed keys: acknowledge the jobs done, and give each unit back, or hold a failing key
-- for a retry, or move it to the dead letters.
-- ARGV[1] prefix, ARGV[2] fence token from the claim, ARGV[3] retry initial backoff ms,
-- ARGV[4] retry maximum backoff ms, ARGV[5] attempts before a poison job is dead, ARGV[6] number
-- of keys, ARGV[7] the number of lanes the client hashed the keys into; then per key: key, its
-- lane, jobs done (the key's first entries in its unit), outcome ('' give back, 'retry'
-- transient failure of the key's next job, 'poison' it cannot be folded), reason (text), jitter
-- (0..1000000, uniform random from the worker); then the number w of whole lanes, and w pairs:
-- lane unit "l:<n>", the number of its entries the claim of this fence took, every one of them
-- done, and none of its keys failing (the client saw those entries at the claim: as long as the
-- fence owns the lane, they are still its first ones, so they are popped unchecked).
-- A key's unit is its lane "l:<n>", or "k:<key>" while it is detached (`detached`: key -> lane).
-- The commits of the jobs done are read from the entries removed (never from the worker): each
-- entry takes one off its commit's count in `left`, and a commit whose count reaches zero
-- leaves `pending` (the checkpoint may pass it).
-- Retries and dead letters are per key, never per lane: a key of a lane that fails has its
-- remaining entries moved out of the lane, in order, into its own list P:k:<key> (detached),
-- so the other keys of the lane keep flowing; enqueue sends its later jobs there too. A
-- failure adds one attempt (jobs done first reset the counter to 1); the key waits in `delayed`
-- (as unit "k:<key>") for a backoff with full jitter, jitter * min(max, initial *
-- 2^(attempts - 1)), then claim.lua gives it back. A poison failure that reaches the attempt
-- limit moves the key to `dead` instead: it stays out of `ready` (its later jobs wait behind
-- it), its list and its commits' counts stay (the checkpoint does not pass it) until `walfold
-- queue dead retry` or `purge`. A detached key whose list empties at an ack rejoins its lane.
-- A lane whose claim failed as a whole (nothing done, every failure transient) is delayed as a
-- unit instead (hold_lane below).
-- The common case (every key of a lane done, in the lane's order) pops the lane's head once;
-- anything else (a failure, jobs given back) rebuilds the lane's list, keeping the order.
-- A unit whose owner is no longer this fence (its lease expired and another worker claimed it)
-- is rejected untouched, with all its keys. Returns {rejected keys, {dead key, attempts, ...},
-- {delayed key, delay ms, attempts, ...}}.
local p, fence = ARGV[1], ARGV[2]
local initial, maxb, max_attempts = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local lanes = redis.call('HGET', p .. ':meta', 'lanes')
if lanes and lanes ~= ARGV[7] then
  return redis.error_reply('WALFOLD lanes: the queue ' .. p .. ' has ' .. lanes ..
                           ' lanes and this walfold hashes keys into ' .. ARGV[7])
end
local ready, active, owner, pending = p .. ':ready', p .. ':active', p .. ':owner', p .. ':pending'
local lift, attempts, delayed, dead = p .. ':lift', p .. ':attempts', p .. ':delayed', p .. ':dead'
local left, detached, dlanes = p .. ':left', p .. ':detached', p .. ':dlanes'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local find, sub = string.find, string.sub
local rejected, died, delays = {}, {}, {}
-- Variadic calls collected over all units, made 1000 at a time (unpack() is bounded by Lua's C
-- stack, and a claim may hold up to workers.batch_keys = 10000 units).
local function variadic(cmd, key, list, step)
  local chunk = 1000 * step
  for j = 1, #list, chunk do redis.call(cmd, key, unpack(list, j, math.min(j + chunk - 1, #list))) end
end
local function hmget(key, fields)
  local out = {}
  for j = 1, #fields, 1000 do
    local part = redis.call('HMGET', key, unpack(fields, j, math.min(j + 999, #fields)))
    for x = 1, #part do out[j + x - 1] = part[x] end
  end
  return out
end
-- entry "<score>:<enqueued ms>:<commit lsn 16 hex>:<p>:<key length>:<key><body>"
local function lsn_of(e)
  local a = find(e, ':', 1, true)
  local b = find(e, ':', a + 1, true)
  return sub(e, b + 1, b + 16), b
end
local function key_of(e, b)
  local c = find(e, ':', b + 18, true)
  local d = find(e, ':', c + 1, true)
  return sub(e, d + 1, d + tonumber(sub(e, c + 1, d - 1)))
end
local per_commit, done_total = {}, 0
local function count(e)
  local lsn = lsn_of(e)
  per_commit[lsn] = (per_commit[lsn] or 0) + 1
  done_total = done_total + 1
end

-- The keys' units.
local keys, lane_of, args = {}, {}, {}
for k = 1, n do
  local i = 8 + (k - 1) * 6
  keys[k] = ARGV[i]
  lane_of[k] = ARGV[i + 1]
  args[k] = i
end
local whole = {}
do
  local at = 8 + n * 6
  for j = 1, tonumber(ARGV[at]) do whole[ARGV[at + 2 * j - 1]] = tonumber(ARGV[at + 2 * j]) end
end
local det = {}
if redis.call('EXISTS', detached) == 1 then det = hmget(detached, keys) end
local units, members = {}, {}
for k = 1, n do
  local u = det[k] and ('k:' .. keys[k]) or ('l:' .. lane_of[k])
  if not members[u] then
    members[u] = {}
    units[#units + 1] = u
  end
  local m = members[u]
  m[#m + 1] = k
end
local owners = hmget(owner, units)
local mine, clear_attempts, clear_lift, to_ready, lifts = {}, {}, {}, {}, {}
local lanes_done = {}  -- lanes that made progress: their attempt counters (lattempts) go

-- The backoff after `a` failed attempts: full jitter (0..1000000) of min(max, initial * 2^(a-1)).
local function backoff(a, jitter)
  local cap = initial * 2 ^ math.min(a - 1, 40)
  if cap > maxb then cap = maxb end
  return math.floor(cap * tonumber(jitter) / 1000000)
end

-- A failing key: attempts, then delayed or dead. `head` is its next entry.
local function hold(k, head, done)
  local key, i = keys[k], args[k]
  local outcome, reason = ARGV[i + 3], ARGV[i + 4]
  local a
  if done > 0 then
    a = 1
    redis.call('HSET', attempts, key, 1)
  else
    a = redis.call('HINCRBY', attempts, key, 1)
  end
  if outcome == 'poison' and a >= max_attempts then
    local lsn = string.match(head, '^%d+:%d+:(%x+):') or ''
    redis.call('HSET', dead, key, cjson.encode({attempts = a, reason = reason, lsn = lsn,
                                                at_ms = now}))
    died[#died + 1] = key
    died[#died + 1] = a
  else
    local delay = backoff(a, ARGV[i + 5])
    redis.call('ZADD', delayed, now + delay, 'k:' .. key)
    delays[#delays + 1] = key
    delays[#delays + 1] = delay
    delays[#delays + 1] = a
  end
end
-- A unit that stays available goes back to ready with its head's score (lifted, below).
local function give_back(u)
  clear_lift[#clear_lift + 1] = u
  local head = redis.call('LINDEX', p .. ':' .. u, 0)
  if head then
    lifts[#lifts + 1] = u
    to_ready[#to_ready + 1] = string.match(head, '^(%d+)')  -- a string: see enqueue.lua
    to_ready[#to_ready + 1] = u
  end
  return head
end

-- A detached key's own list: the jobs done leave its head; then held, given back, or (empty)
-- it rejoins its lane.
local function settle_key(u, k)
  local key, i = keys[k], args[k]
  local done, outcome = tonumber(ARGV[i + 2]), ARGV[i + 3]
  local list = p .. ':' .. u
  if done > 0 then
    local popped = redis.call('LPOP', list, done)
    if popped then
      for _, e in ipairs(popped) do count(e) end
    end
  end
  local head = redis.call('LINDEX', list, 0)
  if head and outcome ~= '' then
    hold(k, head, done)
    return
  end
  if done > 0 or not head then clear_attempts[#clear_attempts + 1] = key end
  if not give_back(u) then
    local lane = det[k]
    redis.call('HDEL', detached, key)
    if redis.call('HINCRBY', dlanes, lane, -1) <= 0 then redis.call('HDEL', dlanes, lane) end
  end
end

-- A lane where nothing was done and its keys failed transiently ('retry', none 'poison'): the
-- worker's batch failed as a whole (MongoDB unreachable, a write conflict), which says nothing
-- about any one key, so the lane waits out the backoff as a unit (its own attempt counter in
-- `lattempts`) instead of detaching every key. Returns false if that is not the case.
local function hold_lane(u, ks)
  local retry = false
  for _, k in ipairs(ks) do
    local i = args[k]
    if tonumber(ARGV[i + 2]) > 0 or ARGV[i + 3] == 'poison' then return false end
    if ARGV[i + 3] == 'retry' then retry = true end
  end
  if not retry or not redis.call('LINDEX', p .. ':' .. u, 0) then return false end
  local a = redis.call('HINCRBY', p .. ':lattempts', u, 1)
  local delay = backoff(a, ARGV[args[ks[1]] + 5])
  redis.call('ZADD', delayed, now + delay, u)
  for _, k in ipairs(ks) do
    delays[#delays + 1] = keys[k]
    delays[#delays + 1] = delay
    delays[#delays + 1] = a
  end
  return true
end

-- A lane: the keys' jobs done are their first entries in it.
local function settle_lane(u, ks)
  local list = p .. ':' .. u
  local quota, failing, total, fails = {}, {}, 0, false
  for _, k in ipairs(ks) do
    local i = args[k]
    local done = tonumber(ARGV[i + 2])
    quota[keys[k]] = done
    total = total + done
    if ARGV[i + 3] ~= '' then
      failing[keys[k]] = k
      fails = true
    end
  end
  local popped = {}
  if total > 0 then popped = redis.call('LPOP', list, total) or {} end
  local ok = not fails
  if ok and whole[u] ~= total then
    for _, e in ipairs(popped) do
      local _, b = lsn_of(e)
      local key = key_of(e, b)
      local q = quota[key]
      if not q or q == 0 then
        ok = false
        break
      end
      quota[key] = q - 1
    end
  end
  if ok then
    for _, e in ipairs(popped) do count(e) end
  else
    -- The rare path: the whole lane, in order: each key's jobs done leave it, a failing key's
    -- other jobs move to its own list, every other entry stays, in order.
    for _, k in ipairs(ks) do quota[keys[k]] = tonumber(ARGV[args[k] + 2]) end
    local all = popped
    local rest = redis.call('LRANGE', list, 0, -1)
    for _, e in ipairs(rest) do all[#all + 1] = e end
    local keep, moved = {}, {}
    for _, e in ipairs(all) do
      local _, b = lsn_of(e)
      local key = key_of(e, b)
      local q = quota[key]
      if q and q > 0 then
        quota[key] = q - 1
        count(e)
      elseif failing[key] then
        local m = moved[key]
        if not m then
          m = {}
          moved[key] = m
        end
        m[#m + 1] = e
      else
        keep[#keep + 1] = e
      end
    end
    redis.call('DEL', list)
    variadic('RPUSH', list, keep, 1)
    local lane = sub(u, 3)
    for key, k in pairs(failing) do
      local m = moved[key]
      local done = tonumber(ARGV[args[k] + 2])
      if m then
        variadic('RPUSH', p .. ':k:' .. key, m, 1)
        redis.call('HSET', detached, key, lane)
        redis.call('HINCRBY', dlanes, lane, 1)
        hold(k, m[1], done)
      elseif done > 0 then
        clear_attempts[#clear_attempts + 1] = key
      end
    end
  end
  -- Progress (or nothing left) ends a lane's run of whole-claim failures.
  return (not give_back(u)) or total > 0
end

for x = 1, #units do
  local u = units[x]
  if owners[x] == fence then
    mine[#mine + 1] = u
    if string.byte(u, 1) == 107 then  -- 'k'
      settle_key(u, members[u][1])
    elseif not hold_lane(u, members[u]) then
      if settle_lane(u, members[u]) then lanes_done[#lanes_done + 1] = u end
    end
  else
    for _, k in ipairs(members[u]) do rejected[#rejected + 1] = keys[k] end
  end
end
if #lifts > 0 then
  -- A unit lifted while it was claimed goes back with the lower of its head score and the lift.
  local l = hmget(lift, lifts)
  for j = 1, #lifts do
    if l[j] and tonumber(l[j]) < tonumber(to_ready[2 * j - 1]) then to_ready[2 * j - 1] = l[j] end
  end
  variadic('ZADD', ready, to_ready, 2)
end
variadic('ZREM', active, mine, 1)
variadic('HDEL', owner, mine, 1)
variadic('HDEL', attempts, clear_attempts, 1)
variadic('HDEL', lift, clear_lift, 1)
if #lanes_done > 0 and redis.call('EXISTS', p .. ':lattempts') == 1 then
  variadic('HDEL', p .. ':lattempts', lanes_done, 1)
end
if done_total > 0 then
  -- One HMGET of the commits' counts, one HSET of the new ones, one HDEL and ZREM of the
  -- commits with nothing left.
  local lsns, done_of = {}, {}
  for lsn, c in pairs(per_commit) do
    lsns[#lsns + 1] = lsn
    done_of[#done_of + 1] = c
  end
  local cur = hmget(left, lsns)
  local set, finished = {}, {}
  for j = 1, #lsns do
    local v = (cur[j] and tonumber(cur[j]) or 0) - done_of[j]
    if v > 0 then
      set[#set + 1] = lsns[j]
      set[#set + 1] = string.format('%d', v)
    else
      finished[#finished + 1] = lsns[j]
    end
  end
  variadic('HSET', left, set, 2)
  variadic('HDEL', left, finished, 1)
  variadic('HDEL', p .. ':since', finished, 1)
  variadic('ZREM', pending, finished, 1)
  redis.call('HINCRBY', p .. ':meta', 'done', done_total)
end
return {rejected, died, delays}
