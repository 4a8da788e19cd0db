-- Record a failed delivery attempt, fenced by the lease and the store's history (lib/fence.lua).
-- Starts the failure streak if none is running, and auto-pauses the subscription once the
-- streak has lasted long enough.
--
-- KEYS: 1 record, 2 lease, 3 attempts hash, 4 store meta
-- ARGV: 1 lease token, 2 eventId, 3 'globalPosition|failed attempts' ('' = not kept: a redrive),
--       4 error text, 5 now (ISO 8601), 6 now (epoch ms), 7 auto-pause after this many ms of
--       failing (0 = never), 8 the auto-pause reason
-- Returns 'ok' | 'paused' (auto-paused now) | 'lost' | 'gone' | 'recreated'
local refused = unfenced(KEYS[1], KEYS[2], ARGV[1], KEYS[4])
if refused then return refused end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) end
redis.call('HSET', KEYS[1], 'lastError', ARGV[4], 'lastErrorAt', ARGV[5])
local since = redis.call('HGET', KEYS[1], 'failingSince')
if not since then
  since = ARGV[6]
  redis.call('HSET', KEYS[1], 'failingSince', since)
end
local limit = tonumber(ARGV[7])
if limit > 0 and tonumber(ARGV[6]) - tonumber(since) >= limit
    and redis.call('HGET', KEYS[1], 'status') == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'auto-paused', 'statusReason', ARGV[8],
    'statusChangedAt', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  return 'paused'
end
return 'ok'
