-- Record lifecycle progress in a store's meta, never backwards, only for the same incarnation.
-- KEYS: 1 meta. ARGV: 1 uid, 2 field ('archived' | 'oldest'), 3 value, 4 bytes deleted (>= 0)
-- Returns the field's value after, or -1 if the store is gone or is another incarnation.
if redis.call('HGET', KEYS[1], 'uid') ~= ARGV[1] then return -1 end
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[2])) or 0
local value = tonumber(ARGV[3])
if value > now then
  redis.call('HSET', KEYS[1], ARGV[2], string.format('%d', value))
  now = value
end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'bytes', -tonumber(ARGV[4])) end
return now
