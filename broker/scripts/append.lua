-- Append events to one stream of one store, atomically, in one round trip.
--
-- KEYS: 1 meta hash, 2 log stream, 3 stream index list, 4 streams zset, 5 stream createdAt hash,
--       6 stream updatedAt hash, 7 idempotency key, 8 time index zset, 9 stream offsets hash
-- ARGV: 1 expected version ('any' | 'no_stream' | 'stream_exists' | decimal)
--       2 streamId, 3 now (ISO 8601), 4 uid for auto-create ('' = the store must exist),
--       5 live channel, 6 publish command ('PUBLISH' | 'SPUBLISH'), 7 idempotency TTL seconds
--       ('0' = no key), 8 transactionId, 9 now in epoch milliseconds (the same instant as ARGV 3),
--       10 the announcement's tail as the client joined it (type, body, type, body... joined by
--       US), 11 the bodies' bytes together, then per event: type, body (event JSON after its
--       positions)
--
-- Returns {'ok', first, last, version, created} | {'conflict', current} | {'nostore'}
--       | {'replay', record}
-- Invariant: globalPositions are head+1 .. head+n with no gaps; the event with globalPosition g
-- is the log entry 'g-0' with fields s (streamId), t (type), p (streamPosition) and e (body: the
-- event's JSON after its positions, which readers put in front: broker/codec.py positioned()).
-- Meta 'bytes' counts the bodies' bytes of the events kept (broker/lifecycle.py subtracts
-- what retention deletes). A stream's version is its offset (events retention moved out of Redis: KEYS[9]) plus the
-- length of its index; index entry k is the globalPosition of streamPosition offset + k.
-- The time index holds, for each second in which the store was appended to, the first
-- globalPosition of that second (scored by its epoch milliseconds): broker/reader.py.
local meta, log, index = KEYS[1], KEYS[2], KEYS[3]
local sid, now, ttl = ARGV[2], ARGV[3], tonumber(ARGV[7])

local state = redis.call('HMGET', meta, 'uid', 'head', 'tsec')
local uid, head, tsec = state[1], tonumber(state[2]), tonumber(state[3]) or 0
local created = 0
if not uid then
  if ARGV[4] == '' then return {'nostore'} end
  uid = ARGV[4]
  redis.call('HSET', meta, 'uid', uid, 'createdAt', now, 'head', 0, 'settings', '{}')
  head = 0
  created = 1
end

if ttl > 0 then
  local prev = redis.call('GET', KEYS[7])
  if prev then
    local bar = string.find(prev, '|', 1, true)
    if string.sub(prev, 1, bar - 1) == uid then return {'replay', string.sub(prev, bar + 1)} end
  end
end

local version = redis.call('LLEN', index) + (tonumber(redis.call('HGET', KEYS[9], sid)) or 0)
local expected = ARGV[1]
local ok
if expected == 'any' then ok = true
elseif expected == 'no_stream' then ok = (version == 0)
elseif expected == 'stream_exists' then ok = (version > 0)
else ok = (tonumber(expected) == version) end
if not ok then
  if ttl > 0 then
    redis.call('SET', KEYS[7], uid .. '|409|' .. expected .. '|' .. version .. '|' .. sid, 'EX', ttl)
  end
  return {'conflict', version}
end

local n = (#ARGV - 11) / 2
local positions = {}
for i = 0, n - 1 do
  local gp = string.format('%d', head + 1 + i)
  redis.call('XADD', log, gp .. '-0', 's', sid, 't', ARGV[12 + 2 * i],
    'p', string.format('%d', version + i), 'e', ARGV[13 + 2 * i])
  positions[i + 1] = gp
end
redis.call('RPUSH', index, unpack(positions))
local last = head + n
redis.call('HINCRBY', meta, 'bytes', ARGV[11])
local second = math.floor(tonumber(ARGV[9]) / 1000)
if second > tsec then
  redis.call('ZADD', KEYS[8], ARGV[9], string.format('%d', head + 1))
  redis.call('HSET', meta, 'head', string.format('%d', last), 'tsec', string.format('%d', second))
else
  redis.call('HSET', meta, 'head', string.format('%d', last))
end
if version == 0 then
  redis.call('ZADD', KEYS[4], head + 1, sid)
  redis.call('HSET', KEYS[5], sid, now)
end
redis.call('HSET', KEYS[6], sid, now)
if ttl > 0 then
  redis.call('SET', KEYS[7], uid .. '|201|' .. string.format('%d', head + 1) .. '|'
    .. string.format('%d', last) .. '|' .. (version + n) .. '|' .. ARGV[8] .. '|' .. sid, 'EX', ttl)
end
-- The announcement: first globalPosition, stream, append time, first streamPosition, the store's
-- epoch (its uid: a listener tells a re-created store from the one it followed), then the
-- client's tail; receivers put the positions into each body (codec.decode_announcement).
local sep = '\31'
redis.call(ARGV[6], ARGV[5], string.format('%d', head + 1) .. sep .. sid .. sep .. ARGV[9] .. sep
  .. string.format('%d', version) .. sep .. uid .. sep .. ARGV[10])
return {'ok', head + 1, last, version + n, created}
