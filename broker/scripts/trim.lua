-- Move the oldest events of a store out of Redis, positions ARGV[2]..ARGV[3], keeping the archive
-- boundary (docs/lifecycle.md): an event leaves Redis only if it is archived, or retention deletes
-- it everywhere, or there is no archive and hot retention drops it; the head always stays.
-- KEYS: 1 meta, 2 log, 3 stream offsets hash, 4 time index zset
-- ARGV: 1 uid, 2 first (the lowest position in Redis, as the caller read it), 3 last,
--       4 archived (as the caller read it), 5 retention bound R (positions below are deleted
--       everywhere), 6 hot bound (positions below may leave Redis), 7 '1' if there is an archive,
--       8 bytes of the events' bodies deleted for good, 9 stream index key prefix, 10 type index
--       prefix, 11 tag index prefix, 12 n, then n pairs (streamId, how many of the events are
--       that stream's), then m, then m types, then the tags of the events.
-- What the events hold (ARGV 8 and 12 on) is the caller's reading of the entries first..last:
-- reading them here cost 3 us per event of Redis' time, turning the reply into Lua tables.
-- The script checks it against the stream index, which names every event of the log: per
-- stream, the counted positions are exactly the list's entries up to `last`, and the counts
-- add up to the events trimmed. A reading that does not hold changes nothing.
-- Returns {low, trimmed} (low: the lowest position now in Redis; trimmed 0: the store moved since
-- the caller read it, read again), {-1} if the store is gone or is another incarnation, or
-- {-2, what} if the reading does not hold.
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'uid', 'head', 'low', 'archived')
if state[1] ~= ARGV[1] then return {-1} end
local head, low = tonumber(state[2]), tonumber(state[3]) or 1
local archived = tonumber(state[4]) or 0
local first, last, seen = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local retention, hot = tonumber(ARGV[5]), tonumber(ARGV[6])
local archiving = ARGV[7] == '1'
if low ~= first then return {low, 0} end
-- What was deleted for good depends on what was archived when the caller counted it.
if archiving and archived ~= seen and retention > seen + 1 then return {low, 0} end
local upto = hot
if archiving then upto = math.min(hot, archived + 1) end
upto = math.min(math.max(upto, retention), head)
if last >= upto or last < first then return {low, 0} end

local n = tonumber(ARGV[12])
local counted = 0
for i = 13, 12 + 2 * n, 2 do
  local key, k = ARGV[9] .. ARGV[i], tonumber(ARGV[i + 1])
  local at = tonumber(redis.call('LINDEX', key, k - 1))
  local after = tonumber(redis.call('LINDEX', key, k))
  if at == nil or at > last or (after ~= nil and after <= last) then
    return {-2, 'stream ' .. ARGV[i]}
  end
  counted = counted + k
end
if counted ~= last - first + 1 then return {-2, 'event count'} end

-- The log's first entries are exactly first..last: they go in one XTRIM (whole listpack nodes
-- freed, where XDEL would mark each entry deleted).
redis.call('XTRIM', log, 'MINID', string.format('%d', last + 1) .. '-0')
for i = 13, 12 + 2 * n, 2 do
  redis.call('LTRIM', ARGV[9] .. ARGV[i], ARGV[i + 1], -1)
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
end
-- The type and tag lists (ascending positions) drop their leading entries up to `last`: found
-- by binary search, at most last - first + 1 of them.
local most = last - first + 1
local function cut(key)
  local lo, hi = 0, math.min(most, redis.call('LLEN', key))
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if tonumber(redis.call('LINDEX', key, mid - 1)) <= last then lo = mid else hi = mid - 1 end
  end
  if lo > 0 then redis.call('LTRIM', key, lo, -1) end
end
local types = 13 + 2 * n
for i = types + 1, types + tonumber(ARGV[types]) do cut(ARGV[10] .. ARGV[i]) end
for i = types + tonumber(ARGV[types]) + 1, #ARGV do cut(ARGV[11] .. ARGV[i]) end
local newlow = last + 1
redis.call('HSET', meta, 'low', string.format('%d', newlow))
local gone = tonumber(ARGV[8])
if gone > 0 then redis.call('HINCRBY', meta, 'bytes', -gone) end
if not archiving then redis.call('HSET', meta, 'oldest', string.format('%d', newlow)) end
-- The time index keeps the bucket that holds newlow and everything after it.
for _ = 1, 1000 do
  local two = redis.call('ZRANGE', KEYS[4], 0, 1)
  if #two < 2 or tonumber(two[2]) > newlow then break end
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, 0)
end
return {newlow, most}
