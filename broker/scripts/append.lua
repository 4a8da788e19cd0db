-- Append events to one stream of one store, atomically, in one round trip (with lib/write.lua).
--
-- KEYS: 1 meta hash, 2 log stream, 3 stream index list, 4 streams zset, 5 stream createdAt hash,
--       6 stream updatedAt hash, 7 idempotency key, 8 time index zset, 9 stream offsets hash
-- ARGV: 1 expected version ('any' | 'no_stream' | 'stream_exists' | decimal)
--       2 streamId, 3 now (ISO 8601), 4 uid for auto-create ('' = the store must exist),
--       5 live channel, 6 publish command ('PUBLISH' | 'SPUBLISH'), 7 idempotency TTL seconds
--       ('0' = no key), 8 transactionId, 9 now in epoch milliseconds (the same instant as ARGV 3),
--       10 the announcement's tail as the client joined it, 11 stream index key prefix,
--       12 type index prefix, 13 tag index prefix, 14 number of events, 15 their tags
--       (lib/write.lua's events_of: the events are read from the tail, type and body each, the
--       body being the event's JSON after its positions)
--
-- Returns {'ok', first, last, version, created} | {'conflict', current} | {'nostore'}
--       | {'replay', record}
local meta, ttl, sid = KEYS[1], tonumber(ARGV[7]), ARGV[2]
local uid, head, tsec, created = open_store(meta, ARGV[3], ARGV[4])
if not uid then return {'nostore'} end
if ttl > 0 then
  local record = replay_record(KEYS[7], uid)
  if record then return {'replay', record} end
end

local s = {meta = meta, log = KEYS[2], streams = KEYS[4], created = KEYS[5], updated = KEYS[6],
  times = KEYS[8], offsets = KEYS[9], stream_prefix = ARGV[11], type_prefix = ARGV[12],
  tag_prefix = ARGV[13], channel = ARGV[5], publish = ARGV[6], uid = uid, now = ARGV[3],
  now_ms = ARGV[9], tsec = tsec, head = head}
local version = stream_version(s, sid)
local expected = ARGV[1]
if not version_ok(expected, version) then
  if ttl > 0 then
    redis.call('SET', KEYS[7], uid .. '|409|' .. expected .. '|' .. version .. '|' .. sid, 'EX', ttl)
  end
  return {'conflict', version}
end

local events = events_of(ARGV[10], ARGV[15], tonumber(ARGV[14]))
local first, last, after = write_events(s, sid, version, events, ARGV[10])
if ttl > 0 then
  redis.call('SET', KEYS[7], uid .. '|201|' .. string.format('%d', first) .. '|'
    .. string.format('%d', last) .. '|' .. after .. '|' .. ARGV[8] .. '|' .. sid, 'EX', ttl)
end
return {'ok', first, last, after, created}
