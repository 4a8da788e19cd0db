-- Delete one webhook subscription (ARGV[1] = its id) or all of a store's ('' = all), with their
-- leases, progress and dead letters. Deleting the lease fences off the dispatcher delivering it.
--
-- KEYS: 1 store meta, 2 owner, 3 index zset, 4 fingerprints hash
-- ARGV: 1 id or '', 2 record key prefix, then the key suffixes of one subscription
-- Returns how many were deleted, or -1 when the store does not exist.
local uid = redis.call('HGET', KEYS[1], 'uid')
if not uid then return -1 end
local prefix = ARGV[2]
local ids
if ARGV[1] == '' then ids = redis.call('ZRANGE', KEYS[3], 0, -1) else ids = {ARGV[1]} end
local n = 0
for _, id in ipairs(ids) do
  local fp = redis.call('HGET', prefix .. id, 'fingerprint')
  if fp then
    redis.call('HDEL', KEYS[4], fp)
    for i = 3, #ARGV do redis.call('UNLINK', prefix .. id .. ARGV[i]) end
    redis.call('ZREM', KEYS[3], id)
    n = n + 1
  end
end
return n
