-- Delete every key of a store atomically: readers see the whole store or nothing.
-- KEYS: 1 meta, 2 log, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt hash
-- ARGV: 1 stream index key prefix
-- Returns 1 if the store existed. Idempotency keys are left to expire: they carry the store's
-- uid and are ignored by a later store of the same name.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local sids = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, sid in ipairs(sids) do redis.call('UNLINK', ARGV[1] .. sid) end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
