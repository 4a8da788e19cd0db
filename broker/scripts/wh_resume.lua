-- Resume a subscription, optionally from another position, in one atomic step with the store's
-- head (so a position is checked against the head as it is when it is written).
--
-- KEYS: 1 store meta, 2 record, 3 lease, 4 attempts hash, 5 done zset
-- ARGV: 1 now (ISO 8601), 2 position: 'keep' | 'latest' | 'earliest' | a decimal globalPosition
--       (the last position treated as processed), 3 start time ('' = none: a position from a
--       time keeps the time in startTime; any other new position drops it)
-- Returns {'ok', position} | {'gone'} (no such subscription) | {'nostore'} | {'ahead', head}
-- 'keep' resumes where the subscription left off, except when its progress is not of the store's
-- history as it is now (auto-paused for a rewind, or not yet noticed: another epoch, or beyond
-- the head): that resumes from 'earliest' of the store as it is now. A new position
-- drops the per-event state (retry counts, positions delivered ahead) of the old one and deletes
-- the lease, fencing off whichever dispatcher holds it: it stops, and the subscription is picked
-- up again from the new position.
local meta = redis.call('HMGET', KEYS[1], 'head', 'uid')
if not meta[2] then return {'nostore'} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone'} end
local head = tonumber(meta[1] or '0')
local record = redis.call('HMGET', KEYS[2], 'position', 'statusDetails', 'epoch')
local current = tonumber(record[1] or '0')
local wanted = ARGV[2]
local rewound = (record[2] and record[2] ~= '') or (record[3] and record[3] ~= meta[2])
  or current > head
if wanted == 'keep' and rewound then wanted = 'earliest' end
local position = current
if wanted == 'latest' then position = head
elseif wanted == 'earliest' then position = 0
elseif wanted ~= 'keep' then
  position = tonumber(wanted)
  if position > head then return {'ahead', head} end
end
redis.call('HSET', KEYS[2], 'status', 'active', 'statusChangedAt', ARGV[1], 'epoch', meta[2])
redis.call('HDEL', KEYS[2], 'statusReason', 'statusDetails', 'failingSince')
if wanted ~= 'keep' then
  redis.call('HSET', KEYS[2], 'position', position)
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'startTime', ARGV[3])
  else redis.call('HDEL', KEYS[2], 'startTime') end
  redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[5])
end
redis.call('HINCRBY', KEYS[2], 'rev', 1)
return {'ok', position}
