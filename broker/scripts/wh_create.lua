-- Create one webhook subscription of one store, or (a config file's 'upsert') converge an
-- existing one to its declared config, atomically.
--
-- KEYS: 1 store meta, 2 owner (uid of the store the subscriptions belong to), 3 index zset,
--       4 fingerprints hash, 5 the subscription's record
-- ARGV: 1 mode ('create' | 'upsert'), 2 id, 3 fingerprint, 4 config JSON,
--       5 declared secret ('' = none declared), 6 generated secret (used when none is declared),
--       7 now (ISO 8601), 8 now (epoch ms), 9 position ('latest' | 'earliest' | decimal),
--       10 start time ('' = none: a position from a time keeps the time, until the dispatcher
--       read an event created at or after it, in startTime), 11 record key prefix, then the key
--       suffixes of one subscription
-- Returns {'nostore'} | {'created', id} | {'existing', id} | {'updated', id} | {'unchanged', id}
--       | {'taken', id}
-- The duplicate rule: a subscription whose fingerprint (filter, URL, headers) is already held
-- is that one. Subscriptions left by a deleted store of the same name (another uid) are kept:
-- each carries the epoch (store uid) it was created or resumed in, so the dispatcher auto-pauses
-- them (scripts/wh_rewind.lua) instead of delivering the new store's events after an old cursor.
-- Records made before epochs existed take the owner's uid as theirs first.
local uid = redis.call('HGET', KEYS[1], 'uid')
if not uid then return {'nostore'} end
local prefix = ARGV[11]
local owner = redis.call('GET', KEYS[2])
if owner ~= uid then
  if owner then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      if not redis.call('HGET', prefix .. old, 'epoch') then
        redis.call('HSET', prefix .. old, 'epoch', owner)
      end
    end
  end
  redis.call('SET', KEYS[2], uid)
end

local mode, id, fp, config, declared = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local holder = redis.call('HGET', KEYS[4], fp)
local exists = redis.call('EXISTS', KEYS[5]) == 1
if mode == 'create' then
  if holder then return {'existing', holder} end
  if exists then return {'taken', id} end
elseif exists then
  if holder and holder ~= id then return {'taken', holder} end
  local current = redis.call('HMGET', KEYS[5], 'config', 'secret', 'fingerprint')
  if current[1] == config and (declared == '' or current[2] == declared) then
    return {'unchanged', id}
  end
  if current[3] and current[3] ~= fp then redis.call('HDEL', KEYS[4], current[3]) end
  redis.call('HSET', KEYS[4], fp, id)
  redis.call('HSET', KEYS[5], 'config', config, 'fingerprint', fp, 'updatedAt', ARGV[7])
  if declared ~= '' then redis.call('HSET', KEYS[5], 'secret', declared) end
  redis.call('HINCRBY', KEYS[5], 'rev', 1)
  return {'updated', id}
elseif holder then
  return {'existing', holder}
end

local position = ARGV[9]
if position == 'latest' then position = redis.call('HGET', KEYS[1], 'head')
elseif position == 'earliest' then position = '0' end
local secret = declared
if secret == '' then secret = ARGV[6] end
redis.call('HSET', KEYS[5], 'id', id, 'config', config, 'secret', secret, 'fingerprint', fp,
  'createdAt', ARGV[7], 'updatedAt', ARGV[7], 'status', 'active', 'position', position, 'rev', 1,
  'epoch', uid)
if ARGV[10] ~= '' then redis.call('HSET', KEYS[5], 'startTime', ARGV[10]) end
redis.call('ZADD', KEYS[3], ARGV[8], id)
redis.call('HSET', KEYS[4], fp, id)
return {'created', id}
