-- The reader's view of the queue for a checkpoint, read atomically: the epoch (proof that
-- Redis still holds walfold's data), the last job sequence number, and the oldest commit with
-- jobs not yet folded. ARGV[1] prefix. Returns {epoch or false, seq, its LSN (16 hex) or false}.
local p = ARGV[1]
local meta = redis.call('HMGET', p .. ':meta', 'epoch', 'seq')
local oldest = redis.call('ZRANGE', p .. ':pending', 0, 0)
return {meta[1], tonumber(meta[2] or '0'), oldest[1] or false}
