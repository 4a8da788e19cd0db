-- Move an event whose attempts ran out to the subscription's dead-letter list, fenced by the
-- lease and the store's history (lib/fence.lua). The list is bounded: past the limit the oldest
-- dead letters are dropped.
--
-- KEYS: 1 record, 2 lease, 3 attempts hash, 4 dead-letter zset, 5 redrive zset, 6 letters hash,
--       7 store meta
-- ARGV: 1 lease token, 2 eventId, 3 globalPosition, 4 the dead-letter record JSON, 5 limit
-- Returns {'ok', dropped} | {'lost', 0} | {'gone', 0} | {'recreated', 0}
local refused = unfenced(KEYS[1], KEYS[2], ARGV[1], KEYS[7])
if refused then return {refused, 0} end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('HSET', KEYS[6], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[5])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[4], 0, over - 1)
  redis.call('ZREM', KEYS[4], unpack(oldest))
  redis.call('HDEL', KEYS[6], unpack(oldest))
  return {'ok', over}
end
return {'ok', 0}
