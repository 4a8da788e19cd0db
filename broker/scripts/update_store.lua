-- Change a store's settings and description (PATCH .../settings), compare-and-set: the caller
-- merged its patch into the settings it read, and nothing is written if the store was created
-- again or its settings changed since (the caller then reads again and merges again).
-- KEYS: 1 meta. ARGV: 1 uid read, 2 settings read (JSON text), 3 settings to write,
--       4 'keep' | 'set' | 'delete' (the description), 5 the description for 'set'
-- Returns 1 written, 0 changed meanwhile, -1 no such store.
local state = redis.call('HMGET', KEYS[1], 'uid', 'settings')
if not state[1] then return -1 end
if state[1] ~= ARGV[1] or (state[2] or '{}') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[3])
if ARGV[4] == 'set' then
  redis.call('HSET', KEYS[1], 'description', ARGV[5])
elseif ARGV[4] == 'delete' then
  redis.call('HDEL', KEYS[1], 'description')
end
return 1
