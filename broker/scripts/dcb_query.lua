-- The Redis part of a DCB query (with lib/dcb.lua), one bounded step of it: the events after
-- `after` matching any item, ascending, at most `limit` of them, among those examined by a call
-- that examines at most `budget` candidates (plus one per item); with the head, the lowest
-- position Redis holds (what lies below it is the archive's to answer), and how far the call got.
-- Also the DCB append's check outside its atomic step (broker/log.py's pre-check): positions only.
-- KEYS: 1 meta, 2 log
-- ARGV: 1 type index prefix, 2 tag index prefix, 3 after, 4 limit, 5 budget (broker.log.DCB_BUDGET),
--       6 '1': return entries, '0': positions, 7 number of items m, then per item: types, tags
-- Returns {head, low, reached, entry or position, ...} (entries as XRANGE gives them), the matches
-- in (after, reached]: `reached` is the head when the call covered everything; else at most
-- `limit` matched up to it, and the caller asks again from it for more.
local head = tonumber(redis.call('HGET', KEYS[1], 'head')) or 0
local low = tonumber(redis.call('HGET', KEYS[1], 'low')) or 1
local after = math.max(tonumber(ARGV[3]), low - 1)
local found, reached = query_positions(KEYS[2], ARGV[1], ARGV[2], items_at(8, tonumber(ARGV[7])),
  after, head, tonumber(ARGV[4]), tonumber(ARGV[5]))
local out = {head, low, reached}
for _, p in ipairs(found) do
  if ARGV[6] == '1' then
    out[#out + 1] = redis.call('XRANGE', KEYS[2], p .. '-0', p .. '-0')[1]
  else
    out[#out + 1] = p
  end
end
return out
