-- Restore events into a store exactly as they were exported: positions, stream positions, ids,
-- times. Events must continue the store's log (the first at head + 1, or anywhere in an empty
-- store: what came before it is then history that is gone) and each stream's own positions.
-- KEYS: 1 meta, 2 log, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt hash,
--       6 stream offsets hash, 7 time index zset
-- ARGV: 1 uid, 2 stream index key prefix, 3 type index prefix, 4 tag index prefix, then per event:
--       globalPosition, streamId, streamPosition, type, body, createdAt (ISO 8601), createdAt
--       (epoch ms), tags (comma-joined, or '')
-- The entries, indexes and registries are the ones scripts/lib/write.lua keeps.
-- Returns {'ok', head} | {'gone'} | {'order', position, expected} | {'stream', position, version}
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'uid', 'head', 'tsec')
if state[1] ~= ARGV[1] then return {'gone'} end
local head, tsec = tonumber(state[2]), tonumber(state[3]) or 0
local bytes = 0
local n = (#ARGV - 4) / 8
for i = 0, n - 1 do
  local b = 5 + 8 * i
  local gp, sid, sp = tonumber(ARGV[b]), ARGV[b + 1], tonumber(ARGV[b + 2])
  if head == 0 and gp > 1 then
    -- An export that starts later: positions before it are history that is gone.
    redis.call('HSET', meta, 'low', ARGV[b], 'oldest', ARGV[b])
    head = gp - 1
  end
  if gp ~= head + 1 then return {'order', gp, head + 1} end
  local index = ARGV[2] .. sid
  local offset = tonumber(redis.call('HGET', KEYS[6], sid)) or 0
  local version = redis.call('LLEN', index) + offset
  if version == 0 and sp > 0 then
    redis.call('HSET', KEYS[6], sid, sp)
    version = sp
  end
  if sp ~= version then return {'stream', gp, version} end
  local tags = ARGV[b + 7]
  if tags ~= '' then
    redis.call('XADD', log, ARGV[b] .. '-0', 's', sid, 't', ARGV[b + 3], 'p', ARGV[b + 2],
      'g', tags, 'e', ARGV[b + 4])
    for tag in string.gmatch(tags, '[^,]+') do
      redis.call('RPUSH', ARGV[4] .. tag, ARGV[b])
      redis.call('SADD', ARGV[4], tag)
    end
  else
    redis.call('XADD', log, ARGV[b] .. '-0', 's', sid, 't', ARGV[b + 3], 'p', ARGV[b + 2],
      'e', ARGV[b + 4])
  end
  redis.call('RPUSH', ARGV[3] .. ARGV[b + 3], ARGV[b])
  redis.call('SADD', ARGV[3], ARGV[b + 3])
  redis.call('RPUSH', index, ARGV[b])
  if version == 0 then
    redis.call('ZADD', KEYS[3], gp, sid)
    redis.call('HSET', KEYS[4], sid, ARGV[b + 5])
  end
  redis.call('HSET', KEYS[5], sid, ARGV[b + 5])
  local second = math.floor(tonumber(ARGV[b + 6]) / 1000)
  if second > tsec then
    redis.call('ZADD', KEYS[7], ARGV[b + 6], ARGV[b])
    tsec = second
  end
  bytes = bytes + #ARGV[b + 4]
  head = gp
end
redis.call('HSET', meta, 'head', string.format('%d', head), 'tsec', string.format('%d', tsec))
redis.call('HINCRBY', meta, 'bytes', bytes)
return {'ok', head}
