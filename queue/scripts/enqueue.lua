-- Enqueue a batch of jobs atomically.
-- ARGV[1] key prefix "<prefix>:{<slot>}"; ARGV[2] end LSN (16 hex) of the last commit this batch
-- completes, or "" ; ARGV[3] number of jobs n; then n groups of 4:
--   ordering key, priority (0..255), pending member "<commit lsn hex>:<key>", job body.
-- Each job is pushed on its key's list as "<score>|<body>", score = priority * 2^45 + seq, so a
-- key's place in `ready` is its head job's score (or lower: a later higher-priority job lifts the
-- whole key, which keeps per-key order and lets urgent work through sooner).
local p = ARGV[1]
local n = tonumber(ARGV[3])
local last = redis.call('HINCRBY', p .. ':meta', 'seq', n)
local first = last - n + 1
local ready, active, pending = p .. ':ready', p .. ':active', p .. ':pending'
local i = 4
for j = 0, n - 1 do
  local key, prio, member, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local score = prio * 35184372088832 + first + j
  local s = string.format('%.0f', score)
  redis.call('RPUSH', p .. ':k:' .. key, s .. '|' .. body)
  redis.call('ZADD', pending, 0, member)
  if redis.call('ZSCORE', active, key) then
    -- Claimed right now: remember the most urgent score, applied when the key goes back.
    local lift = redis.call('HGET', p .. ':lift', key)
    if (not lift) or tonumber(lift) > score then redis.call('HSET', p .. ':lift', key, s) end
  else
    redis.call('ZADD', ready, 'LT', s, key)
  end
end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', p .. ':meta', 'enqueued_end_lsn')
  if (not cur) or cur < ARGV[2] then
    redis.call('HSET', p .. ':meta', 'enqueued_end_lsn', ARGV[2])
  end
end
return last
