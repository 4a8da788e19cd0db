-- Read events of one stream by stream position, in one round trip.
-- KEYS: 1 stream index list, 2 log stream
-- ARGV: 1 first index, 2 last index (inclusive; LRANGE semantics)
-- Returns {version, e1, e2, ...} in stream order.
local out = {redis.call('LLEN', KEYS[1])}
for _, gp in ipairs(redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local entry = redis.call('XRANGE', KEYS[2], gp .. '-0', gp .. '-0')
  local fields = entry[1][2]
  out[#out + 1] = gp
  out[#out + 1] = fields[4]
  out[#out + 1] = fields[6]
end
return out
