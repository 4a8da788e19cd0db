-- Append to several streams of one store atomically (all or nothing, one transactionId), in one
-- round trip (with lib/write.lua). A stream named twice continues from its first part.
--
-- KEYS: 1 meta hash, 2 log stream, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt
--       hash, 6 idempotency key, 7 time index zset, 8 stream offsets hash
-- ARGV: 1 now (ISO 8601), 2 uid for auto-create ('' = the store must exist), 3 live channel,
--       4 publish command, 5 idempotency TTL seconds ('0' = no key), 6 transactionId,
--       7 now in epoch ms, 8 stream index prefix, 9 type index prefix, 10 tag index prefix,
--       11 number of streams k, then per stream: streamId, expected version, number of events,
--       the announcement's tail, the events' tags (lib/write.lua's events_of reads the events
--       from these two)
--
-- Returns {'ok', created, first, last, version, first, last, version, ...} (per stream)
--       | {'conflict', streamId, expected, current} | {'nostore'} | {'replay', record}
-- A replay record is 'M' US transactionId then per stream RS streamId US first US last US version,
-- or '409' US streamId US expected US current.
local meta, ttl = KEYS[1], tonumber(ARGV[5])
local US, RS = '\31', '\30'
local uid, head, tsec, created = open_store(meta, ARGV[1], ARGV[2])
if not uid then return {'nostore'} end
if ttl > 0 then
  local record = replay_record(KEYS[6], uid)
  if record then return {'replay', record} end
end

local s = {meta = meta, log = KEYS[2], streams = KEYS[3], created = KEYS[4], updated = KEYS[5],
  times = KEYS[7], offsets = KEYS[8], stream_prefix = ARGV[8], type_prefix = ARGV[9],
  tag_prefix = ARGV[10], channel = ARGV[3], publish = ARGV[4], uid = uid, now = ARGV[1],
  now_ms = ARGV[7], tsec = tsec, head = head}
local k = tonumber(ARGV[11])
local parts, versions = {}, {}
for i = 0, k - 1 do
  local b = 12 + 5 * i
  local sid, expected, n = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2])
  local version = versions[sid] or stream_version(s, sid)
  if not version_ok(expected, version) then
    if ttl > 0 then
      redis.call('SET', KEYS[6], uid .. '|409' .. US .. sid .. US .. expected .. US .. version,
        'EX', ttl)
    end
    return {'conflict', sid, expected, version}
  end
  parts[i + 1] = {sid, version, events_of(ARGV[b + 3], ARGV[b + 4], n), ARGV[b + 3]}
  versions[sid] = version + n
end
local out, record = {'ok', created}, 'M' .. US .. ARGV[6]
for _, part in ipairs(parts) do
  local first, last, after = write_events(s, part[1], part[2], part[3], part[4])
  out[#out + 1] = first
  out[#out + 1] = last
  out[#out + 1] = after
  record = record .. RS .. part[1] .. US .. first .. US .. last .. US .. after
end
if ttl > 0 then redis.call('SET', KEYS[6], uid .. '|' .. record, 'EX', ttl) end
return out
