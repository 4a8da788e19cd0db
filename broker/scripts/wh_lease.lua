-- A dispatcher replica's lease on one subscription.
-- KEYS: 1 lease. ARGV: 1 'acquire' | 'renew' | 'release', 2 the replica's token, 3 TTL in ms
-- acquire: take a free lease (or extend our own); renew: extend only our own; release: delete
-- only our own. Returns 1 when we hold (or released) it, 0 when another replica holds it or it
-- expired.
local holder = redis.call('GET', KEYS[1])
local op, token = ARGV[1], ARGV[2]
if op == 'acquire' and not holder then
  redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
  return 1
end
if holder ~= token then return 0 end
if op == 'release' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
