-- Read events of one stream by stream position, in one round trip.
-- KEYS: 1 stream index list, 2 log stream
-- ARGV: 1 first index, 2 last index (inclusive; LRANGE semantics)
-- Returns {version, entry, entry, ...} in stream order, each entry as XRANGE gives it.
local out = {redis.call('LLEN', KEYS[1])}
for _, gp in ipairs(redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  out[#out + 1] = redis.call('XRANGE', KEYS[2], gp .. '-0', gp .. '-0')[1]
end
return out
