-- Move the oldest events of a store out of Redis, at most ARGV[5] of them, keeping the archive
-- boundary (docs/lifecycle.md): an event leaves Redis only if it is archived, or retention deletes
-- it everywhere, or there is no archive and hot retention drops it; the head always stays.
-- KEYS: 1 meta, 2 log, 3 stream offsets hash, 4 time index zset
-- ARGV: 1 uid, 2 retention bound R (positions below are deleted everywhere),
--       3 hot bound (positions below may leave Redis), 4 '1' if there is an archive,
--       5 at most this many entries, 6 stream index key prefix, 7 type index prefix, 8 tag index
--       prefix
-- Returns {low, trimmed, bytes deleted everywhere} (low: the lowest position now in Redis),
-- or {-1} if the store is gone or is another incarnation.
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'uid', 'head', 'low', 'archived')
if state[1] ~= ARGV[1] then return {-1} end
local head, low = tonumber(state[2]), tonumber(state[3]) or 1
local archived = tonumber(state[4]) or 0
local retention, hot = tonumber(ARGV[2]), tonumber(ARGV[3])
local upto = hot
if ARGV[4] == '1' then upto = math.min(hot, archived + 1) end
upto = math.min(math.max(upto, retention), head)
if upto <= low then return {low, 0, 0} end

local entries = redis.call('XRANGE', log, '-', string.format('%d', upto - 1) .. '-0',
  'COUNT', tonumber(ARGV[5]))
if #entries == 0 then
  redis.call('HSET', meta, 'low', string.format('%d', upto))
  return {upto, 0, 0}
end
local per, ids, gone = {}, {}, 0
local indexes = {}  -- type and tag index lists the trimmed entries are in
local last = low - 1
for i, entry in ipairs(entries) do
  local fields = entry[2]
  local sid = fields[2]
  per[sid] = (per[sid] or 0) + 1
  indexes[ARGV[7] .. fields[4]] = true
  if #fields == 10 then
    for tag in string.gmatch(fields[8], '[^,]+') do indexes[ARGV[8] .. tag] = true end
  end
  ids[i] = entry[1]
  last = tonumber(string.match(entry[1], '^(%d+)'))
  -- Deleted for good: without an archive, everything trimmed; with one, what retention deletes
  -- before it was archived (what was archived, the archive's deletion counts).
  if ARGV[4] ~= '1' or (last < retention and last > archived) then
    gone = gone + #fields[#fields]
  end
end
redis.call('XDEL', log, unpack(ids))
for sid, n in pairs(per) do
  redis.call('LTRIM', ARGV[6] .. sid, n, -1)
  redis.call('HINCRBY', KEYS[3], sid, n)
end
-- The type and tag lists drop what left the log (their oldest entries, up to `last`).
for key in pairs(indexes) do
  local head = redis.call('LRANGE', key, 0, #entries - 1)
  local n = 0
  for _, p in ipairs(head) do
    if tonumber(p) > last then break end
    n = n + 1
  end
  if n > 0 then redis.call('LTRIM', key, n, -1) end
end
local newlow = last + 1
redis.call('HSET', meta, 'low', string.format('%d', newlow))
if gone > 0 then redis.call('HINCRBY', meta, 'bytes', -gone) end
if ARGV[4] ~= '1' then redis.call('HSET', meta, 'oldest', string.format('%d', newlow)) end
-- The time index keeps the bucket that holds newlow and everything after it.
for _ = 1, 1000 do
  local two = redis.call('ZRANGE', KEYS[4], 0, 1)
  if #two < 2 or tonumber(two[2]) > newlow then break end
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, 0)
end
return {newlow, #entries, gone}
