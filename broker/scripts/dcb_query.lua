-- The Redis part of a DCB query (with lib/dcb.lua): the events after `after` matching any item,
-- ascending, at most `limit` of them, with the head and the lowest position Redis holds (what lies
-- below it is the archive's to answer).
-- KEYS: 1 meta, 2 log
-- ARGV: 1 type index prefix, 2 tag index prefix, 3 after, 4 limit, 5 number of items m, then per
--       item: types, tags
-- Returns {head, low, entry, entry, ...} (entries as XRANGE gives them)
local head = tonumber(redis.call('HGET', KEYS[1], 'head')) or 0
local low = tonumber(redis.call('HGET', KEYS[1], 'low')) or 1
local out = {head, low}
local after = math.max(tonumber(ARGV[3]), low - 1)
local found = query_positions(KEYS[2], ARGV[1], ARGV[2], items_at(6, tonumber(ARGV[5])), after,
  tonumber(ARGV[4]))
for _, p in ipairs(found) do
  out[#out + 1] = redis.call('XRANGE', KEYS[2], p .. '-0', p .. '-0')[1]
end
return out
