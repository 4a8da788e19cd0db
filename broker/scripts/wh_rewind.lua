-- Check, in one atomic step, that a subscription's progress is a position of its store's history
-- as it is now, fenced by the lease. Its progress cannot race an append in flight: the store's
-- head and uid are read in the same step as the progress, and the progress only ever moves to
-- positions a dispatcher read from the log, so an honest cursor is always <= the head read here.
--
-- KEYS: 1 record, 2 lease, 3 store meta, 4 owner (uid the store's subscriptions last belonged to)
-- ARGV: 1 lease token, 2 now (ISO 8601)
-- Returns {'ok'} | {'lost'} | {'gone'} | {'paused', reason, details JSON}: auto-paused now, or
-- already auto-paused for the same rewind (the record is then left as it is). reason is
-- 'store-recreated' (the record's epoch is not the store's uid) or 'position-ahead' (the progress
-- lies beyond the head: the store lost writes, or a position was asked for that it never had).
-- A record without an epoch (made before epochs) takes the owner's, which is the store's
-- unless the store was created again since.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'lost'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local meta = redis.call('HMGET', KEYS[3], 'head', 'uid')
local uid = meta[2]
if not uid then return {'ok'} end -- the store is gone: nothing to deliver, nothing to check
local head = tonumber(meta[1] or '0')
local record = redis.call('HMGET', KEYS[1], 'epoch', 'position', 'status', 'statusDetails')
local epoch = record[1]
if not epoch or epoch == '' then
  epoch = redis.call('GET', KEYS[4]) or uid
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local position = tonumber(record[2] or '0')
local reason
if epoch ~= uid then reason = 'store-recreated'
elseif position > head then reason = 'position-ahead'
else return {'ok'} end
local details = string.format(
  '{"reason":"%s","position":%d,"headPosition":%d,"epoch":"%s","subscriptionEpoch":"%s"}',
  reason, position, head, uid, epoch)
if record[4] == details then return {'paused', reason, details} end -- told already
local text
if reason == 'store-recreated' then
  text = 'the store was deleted and created again: progress ' .. position ..
    ' belongs to its old history (head now ' .. head .. '); resume to pick a position'
else
  text = 'progress ' .. position .. ' is beyond the store\'s head ' .. head ..
    ' (the store lost writes?); resume to pick a position'
end
redis.call('HSET', KEYS[1], 'status', 'auto-paused', 'statusReason', text,
  'statusDetails', details, 'statusChangedAt', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return {'paused', reason, details}
