-- Start of a reader session: decide, atomically, whether Redis lost walfold's data.
-- ARGV[1] prefix, ARGV[2] a fresh random epoch, ARGV[3] the epoch this reader process last saw
-- ('' if none, 'reset' to empty the queue whatever it holds), ARGV[4] the last job sequence
-- number it saw, ARGV[5] the queue format this build reads and writes (meta field `format`).
-- A queue marked with another format is left untouched: returns {false, 3, its format} (the
-- client refuses it), except for a reset, which deletes every key under the prefix. A queue
-- without the marker was written before it existed (format ARGV[6], older bodies): marked when
-- it holds no job (no pending commit), refused as format ARGV[6] when it does.
-- Lost when: the queue state is there without its epoch (flushed, then written again), the
-- epoch changed, the queue came back empty under a reader that knew it, or the sequence went
-- back (an AOF that lost its tail). Then every queue key is deleted before the new epoch is set:
-- everything after the slot's confirmed position is enqueued again, in commit order, and no
-- worker can fold a newer job of a key before an older replayed one (workers claim nothing
-- while there is no epoch).
-- Returns {epoch, state}: 0 = adopted, 1 = first start (no state), 2 = lost and reset.
local p, fresh, known, known_seq, format = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local meta = p .. ':meta'
local have = redis.call('HGET', meta, 'format')
-- (Unmarked and without an epoch is not that: an older build always set both; it is a Redis that
-- lost walfold's data, handled below.)
if (not have) and redis.call('HEXISTS', meta, 'epoch') == 1 and
    redis.call('ZCARD', p .. ':pending') > 0 then
  have = ARGV[6]
end
if have and have ~= format then
  if known ~= 'reset' then return {false, 3, have} end
  -- Another layout: its keys are not known here, so everything under the prefix goes.
  for _, k in ipairs(redis.call('KEYS', p .. ':*')) do redis.call('DEL', k) end
end
local lanes = redis.call('HGET', meta, 'lanes')
if lanes and lanes ~= ARGV[7] and known ~= 'reset' then return {false, 4, lanes} end
local cur = redis.call('HGET', meta, 'epoch')
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local lost = false
if cur then
  lost = (known ~= '' and cur ~= known) or seq < known_seq
else
  lost = redis.call('EXISTS', meta) == 1 or known ~= ''
end
if lost then
  for _, k in ipairs(redis.call('KEYS', p .. ':k:*')) do redis.call('DEL', k) end
  for _, k in ipairs(redis.call('KEYS', p .. ':l:*')) do redis.call('DEL', k) end
  for _, s in ipairs({'ready', 'active', 'owner', 'pending', 'left', 'since', 'lift', 'delayed', 'attempts',
                        'dead', 'detached', 'dlanes', 'lattempts', 'meta'}) do
    redis.call('DEL', p .. ':' .. s)
  end
  cur = nil
end
if cur then
  if not have then redis.call('HSET', meta, 'format', format, 'lanes', ARGV[7]) end
  return {cur, 0}
end
redis.call('HSET', meta, 'epoch', fresh, 'format', format, 'lanes', ARGV[7])
if lost then return {fresh, 2} end
return {fresh, 1}
