-- Read events of one stream by stream position, in one round trip.
-- KEYS: 1 stream index list, 2 log stream, 3 stream offsets hash
-- ARGV: 1 first stream position, 2 last stream position (inclusive), 3 streamId
-- Returns {version, offset, entry, entry, ...}: the stream's version, the first stream position
-- its index still holds in Redis (earlier ones are archived or gone), and the entries of
-- [max(first, offset), last] in stream order, each as XRANGE gives it.
local offset = tonumber(redis.call('HGET', KEYS[3], ARGV[3])) or 0
local out = {redis.call('LLEN', KEYS[1]) + offset, offset}
local lo = math.max(tonumber(ARGV[1]), offset) - offset
local hi = tonumber(ARGV[2]) - offset
if hi < lo then return out end
for _, gp in ipairs(redis.call('LRANGE', KEYS[1], lo, hi)) do
  out[#out + 1] = redis.call('XRANGE', KEYS[2], gp .. '-0', gp .. '-0')[1]
end
return out
