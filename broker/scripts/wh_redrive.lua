-- Queue dead letters for redelivery: one (ARGV[1] = its eventId) or all ('').
-- KEYS: 1 record, 2 dead-letter zset, 3 redrive zset (both eventId -> globalPosition)
-- Returns how many were queued, or -1 when the subscription does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local moved = 0
local function move(event_id, score)
  redis.call('ZADD', KEYS[3], score, event_id)
  redis.call('ZREM', KEYS[2], event_id)
  moved = moved + 1
end
if ARGV[1] == '' then
  local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do move(all[i], all[i + 1]) end
else
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if score then move(ARGV[1], score) end
end
if moved > 0 then redis.call('HINCRBY', KEYS[1], 'rev', 1) end
return moved
