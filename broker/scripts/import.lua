-- Restore events into a store exactly as they were exported: positions, stream positions, ids,
-- times. Events must continue the store's log (the first at head + 1, or anywhere in an empty
-- store: what came before it is then history that is gone) and each stream's own positions (a
-- stream new to the store may start at any streamPosition, for the same reason). Every event is
-- checked before any is written: a refused batch leaves the store as it was.
-- KEYS: 1 meta, 2 log, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt hash,
--       6 stream offsets hash, 7 time index zset
-- ARGV: 1 uid, 2 stream index key prefix, 3 type index prefix, 4 tag index prefix, then per event:
--       globalPosition, streamId, streamPosition, type, body, createdAt (ISO 8601), createdAt
--       (epoch ms), tags (comma-joined, or '')
-- The entries, indexes and registries are the ones scripts/lib/write.lua keeps; a stream new to
-- the store is registered (streams zset, createdAt) at its first event, as an append does.
-- Returns {'ok', head} | {'gone'} | {'order', position, expected} | {'stream', position, version}
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'uid', 'head', 'tsec')
if state[1] ~= ARGV[1] then return {'gone'} end
local head, tsec = tonumber(state[2]), tonumber(state[3]) or 0
local n = (#ARGV - 4) / 8
local versions, new = {}, {}
local at = head
for i = 0, n - 1 do
  local b = 5 + 8 * i
  local gp, sid, sp = tonumber(ARGV[b]), ARGV[b + 1], tonumber(ARGV[b + 2])
  if at == 0 and gp > 1 then at = gp - 1 end
  if gp ~= at + 1 then return {'order', gp, at + 1} end
  local version = versions[sid]
  if version == nil then
    version = redis.call('LLEN', ARGV[2] .. sid)
      + (tonumber(redis.call('HGET', KEYS[6], sid)) or 0)
    if version == 0 then
      new[sid] = true
      version = sp
    end
  end
  if sp ~= version then return {'stream', gp, version} end
  versions[sid] = sp + 1
  at = gp
end
local bytes = 0
for i = 0, n - 1 do
  local b = 5 + 8 * i
  local gp, sid, sp = tonumber(ARGV[b]), ARGV[b + 1], tonumber(ARGV[b + 2])
  if head == 0 and gp > 1 then
    -- An export that starts later: positions before it are history that is gone.
    redis.call('HSET', meta, 'low', ARGV[b], 'oldest', ARGV[b])
  end
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
  redis.call('RPUSH', ARGV[2] .. sid, ARGV[b])
  if new[sid] then
    -- Its first event kept: the list starts at this streamPosition.
    if sp > 0 then redis.call('HSET', KEYS[6], sid, ARGV[b + 2]) end
    redis.call('ZADD', KEYS[3], gp, sid)
    redis.call('HSET', KEYS[4], sid, ARGV[b + 5])
    new[sid] = nil
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
