-- Settle claimed keys: acknowledge the jobs done, and give the key back, or hold it for a
-- retry, or move it to the dead letters.
-- ARGV[1] prefix, ARGV[2] fence token from the claim, ARGV[3] retry initial backoff ms,
-- ARGV[4] retry maximum backoff ms, ARGV[5] attempts before a poison job is dead, ARGV[6] number
-- of keys; then per key: key, jobs done (removed from the head of its list), outcome ('' give
-- back, 'retry' transient failure of the head job, 'poison' the head job cannot be folded),
-- reason (text), jitter (0..1000000, uniform random from the worker).
-- The commits of the jobs done are read from the entries removed (never from the worker): each
-- entry takes one off its commit's count in `left`, and a commit whose count reaches zero
-- leaves `pending` (the checkpoint may pass it).
-- Jobs done reset the key's attempt counter (it counts failures of the current head job).
-- A failure adds one attempt; the key waits in `delayed` for a backoff with full jitter,
-- jitter * min(max, initial * 2^(attempts - 1)), then claim.lua gives it back. A poison failure
-- that reaches the attempt limit moves the key to `dead` instead: it stays out of `ready` (later
-- jobs of that key wait behind it), its list and its commits' counts stay (the checkpoint does
-- not pass it) until `walfold queue dead retry` or `purge`.
-- A key whose owner is no longer this fence (its lease expired and another worker claimed it)
-- is rejected untouched. Returns {rejected keys, {dead key, attempts, ...},
-- {delayed key, delay ms, attempts, ...}}.
local p, fence = ARGV[1], ARGV[2]
local initial, maxb, max_attempts = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local ready, active, owner, pending = p .. ':ready', p .. ':active', p .. ':owner', p .. ':pending'
local lift, attempts, delayed, dead = p .. ':lift', p .. ':attempts', p .. ':delayed', p .. ':dead'
local left = p .. ':left'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local find, sub = string.find, string.sub
local rejected, died, delays = {}, {}, {}
-- Variadic calls collected over all keys, made 1000 keys at a time (unpack() is bounded by
-- Lua's C stack, and a claim may hold up to workers.batch_keys = 10000 keys).
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
local mine, clear_attempts, clear_lift, to_ready = {}, {}, {}, {}
local per_commit, done_total = {}, 0
local keys = {}
for k = 1, n do keys[k] = ARGV[7 + (k - 1) * 5] end
local owners = hmget(owner, keys)
local lifts = nil
for k = 1, n do
  local i = 7 + (k - 1) * 5
  local key, done, outcome, reason = keys[k], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  if owners[k] == fence then
    mine[#mine + 1] = key
    local list = p .. ':k:' .. key
    if done > 0 then
      local popped = redis.call('LPOP', list, done)
      if popped then
        -- entry "<score>:<enqueued ms>:<commit lsn 16 hex>:..."
        for _, e in ipairs(popped) do
          local a = find(e, ':', 1, true)
          local b = find(e, ':', a + 1, true)
          local lsn = sub(e, b + 1, b + 16)
          per_commit[lsn] = (per_commit[lsn] or 0) + 1
        end
        done_total = done_total + #popped
      end
    end
    local head = redis.call('LINDEX', list, 0)
    if head and outcome ~= '' then
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
        local jitter = tonumber(ARGV[i + 4])
        local cap = initial * 2 ^ math.min(a - 1, 40)
        if cap > maxb then cap = maxb end
        local delay = math.floor(cap * jitter / 1000000)
        redis.call('ZADD', delayed, now + delay, key)
        delays[#delays + 1] = key
        delays[#delays + 1] = delay
        delays[#delays + 1] = a
      end
    else
      if done > 0 or not head then clear_attempts[#clear_attempts + 1] = key end
      clear_lift[#clear_lift + 1] = key
      if head then
        if not lifts then lifts = {} end
        lifts[#lifts + 1] = key
        to_ready[#to_ready + 1] = string.match(head, '^(%d+)')  -- a string: see enqueue.lua
        to_ready[#to_ready + 1] = key
      end
    end
  else
    rejected[#rejected + 1] = key
  end
end
if lifts then
  -- A key lifted while it was claimed goes back with the lower of its head score and the lift.
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
