-- Record what a dispatcher finished for one subscription, fenced by its lease and its store's
-- history (lib/fence.lua): a replica that lost the lease can never move another's progress, nor
-- a delivery of a store's old history the progress of the store created again.
--
-- KEYS: 1 record, 2 lease, 3 attempts hash, 4 done zset, 5 redrive zset, 6 letters hash, 7 store
--       meta
-- ARGV: 1 lease token, 2 position (lastProcessedEventGlobalPosition: every matching event at or
--       below it is finished), 3 '1' when a delivery succeeded (ends the failure streak),
--       4 now (ISO 8601), then a count and that many globalPositions finished above position,
--       then a count and that many eventIds whose retry counters are dropped, then a count and
--       that many redriven eventIds delivered (their dead letters are dropped), then '1' when
--       the start time was reached: an event created at or after it was read (startTime is
--       dropped; position is at least the one before it)
-- Returns 'ok' | 'lost' (another replica holds the lease) | 'gone' (the subscription was deleted)
-- | 'recreated' (the store was created again)
local refused = unfenced(KEYS[1], KEYS[2], ARGV[1], KEYS[7])
if refused then return refused end
local position = tonumber(ARGV[2])
if position > tonumber(redis.call('HGET', KEYS[1], 'position') or '0') then
  redis.call('HSET', KEYS[1], 'position', ARGV[2])
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'lastSuccessAt', ARGV[4])
  redis.call('HDEL', KEYS[1], 'failingSince')
end
local i = 5
local n = tonumber(ARGV[i])
local scored = {}  -- one ZADD per 500 positions, not one each (Redis' time per save)
for j = i + 1, i + n do
  if tonumber(ARGV[j]) > position then
    scored[#scored + 1] = ARGV[j]
    scored[#scored + 1] = ARGV[j]
    if #scored >= 1000 then
      redis.call('ZADD', KEYS[4], unpack(scored))
      scored = {}
    end
  end
end
if #scored > 0 then redis.call('ZADD', KEYS[4], unpack(scored)) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
i = i + n + 1
n = tonumber(ARGV[i])
if n > 0 then redis.call('HDEL', KEYS[3], unpack(ARGV, i + 1, i + n)) end
i = i + n + 1
n = tonumber(ARGV[i])
if n > 0 then
  redis.call('ZREM', KEYS[5], unpack(ARGV, i + 1, i + n))
  redis.call('HDEL', KEYS[6], unpack(ARGV, i + 1, i + n))
end
if ARGV[i + n + 1] == '1' then redis.call('HDEL', KEYS[1], 'startTime') end
return 'ok'
