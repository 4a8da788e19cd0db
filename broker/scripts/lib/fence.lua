-- The fence of a dispatcher's writes to one webhook subscription: its lease, its record, and its
-- store's history. A replica that lost the lease is 'lost'; a deleted subscription is 'gone'; a
-- record whose epoch is not its store's uid any more is 'recreated': the store was deleted and
-- created again, so what a delivery of the old history finished moves nothing (the progress
-- stays where the auto-pause saw it, until a resume gives the record the new epoch). A record
-- without an epoch (made before epochs, given one when its worker starts) and a deleted store
-- are not fenced by history.
local function unfenced(record, lease, token, meta)
  if redis.call('GET', lease) ~= token then return 'lost' end
  if redis.call('EXISTS', record) == 0 then return 'gone' end
  local epoch = redis.call('HGET', record, 'epoch')
  if epoch and epoch ~= '' then
    local uid = redis.call('HGET', meta, 'uid')
    if uid and uid ~= epoch then return 'recreated' end
  end
  return nil
end
