-- Set fields of an existing subscription record and bump its revision, which tells the
-- dispatcher holding it to reload it.
-- KEYS: 1 record. ARGV: field, value, field, value, ... (an empty value deletes the field)
-- Returns the new revision, or 0 when the subscription does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return redis.call('HINCRBY', KEYS[1], 'rev', 1)
