-- Delete every key of a store atomically: readers see the whole store or nothing.
-- KEYS: 1 meta, 2 log, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt hash,
--       6 stream offsets hash, 7 time index zset, 8 lifecycle lease
-- ARGV: 1 stream index key prefix, 2 type index prefix, 3 tag index prefix (each also the name of
--       the set of types / tags in use)
-- Returns the store's uid if it existed (its archived events are deleted by the caller), else
-- false. Idempotency keys are left to expire: they carry the store's uid and are ignored by a
-- later store of the same name.
local uid = redis.call('HGET', KEYS[1], 'uid')
if not uid then return false end
local sids = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, sid in ipairs(sids) do redis.call('UNLINK', ARGV[1] .. sid) end
for i = 2, 3 do
  for _, name in ipairs(redis.call('SMEMBERS', ARGV[i])) do redis.call('UNLINK', ARGV[i] .. name) end
  redis.call('UNLINK', ARGV[i])
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
return uid
