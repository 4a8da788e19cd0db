-- A DCB append (DeltaBase's streamless append with a condition): check that no event after
-- `after` matches the condition and append, in one atomic step (with lib/write.lua, lib/dcb.lua).
-- Events go to the reserved stream ARGV[10].
--
-- The caller may have checked part of the range already, outside this step (broker/log.py's
-- pre-check): the archived part in PostgreSQL, then Redis's in calls of dcb_query.lua, each
-- bounded. Events never change and positions only grow, so (after, ARGV[12]] checked once stays
-- checked; this step checks what lies above it, which must still be in Redis (or the check would
-- miss what retention moved out meanwhile: 'retry'), and at most ARGV[13] candidates of it: when
-- more appends raced in than that, it appends nothing and says how far it got ('retry'), and the
-- caller checks on from there outside the atomic step and asks again. Matches the caller found
-- come in ARGV[15]: the append fails with them (recorded under the idempotency key, unless the
-- key already holds an outcome to repeat).
--
-- KEYS: 1 meta, 2 log, 3 streams zset, 4 stream createdAt hash, 5 stream updatedAt hash,
--       6 time index zset, 7 stream offsets hash, 8 idempotency key
-- ARGV: 1 now (ISO 8601), 2 uid for auto-create ('' = must exist), 3 live channel, 4 publish
--       command, 5 transactionId, 6 now in epoch ms, 7 stream index prefix, 8 type index prefix,
--       9 tag index prefix, 10 the DCB stream id, 11 after (0: from the start), 12 checked up to
--       (by the caller, with nothing matching; 0: none), 13 budget (candidates this step may
--       examine: broker.log.DCB_BUDGET), 14 the most conflicting positions to name, 15 the
--       matches the caller found (joined by ','; '': none), 16 number of condition items m, then
--       per item: types, tags; then the announcement's tail, the number of events, their tags
--       (lib/write.lua's events_of reads the events from the tail and the tags), then the
--       idempotency TTL seconds ('0' = no key)
-- Returns {'ok', first, last, the DCB stream's version before} | {'conflict', position...} |
-- {'retry', checked up to} (part of the range is no longer in Redis, or holds more than the
-- budget: check on from there, then again) | {'nostore'} | {'replay', record} | {'ahead', head}
-- (``after`` is past the store's head). With an idempotency key, the outcome is recorded for a
-- repeat of the request: 'D' US transactionId US first US last US version before, or, for a
-- conflict, 'C' US after US the positions joined by ','.
local US = '\31'
local meta = KEYS[1]
local uid, head, tsec = open_store(meta, ARGV[1], ARGV[2])
if not uid then return {'nostore'} end
local m = tonumber(ARGV[16])
local tail_at = 17 + 2 * m
local ttl = tonumber(ARGV[tail_at + 3])
if ttl > 0 then
  local record = replay_record(KEYS[8], uid)
  if record then return {'replay', record} end
end
if m > 0 and tonumber(ARGV[11]) > head then
  -- A position this store never had (a recreated store, a failover that lost writes): the
  -- condition cannot hold for history the caller knows and the store does not.
  return {'ahead', head}
end

local function conflict(found)
  if ttl > 0 then
    redis.call('SET', KEYS[8], uid .. '|C' .. US .. ARGV[11] .. US .. table.concat(found, ','),
      'EX', ttl)
  end
  local out = {'conflict'}
  for _, p in ipairs(found) do out[#out + 1] = p end
  return out
end

if ARGV[15] ~= '' then return conflict(split(ARGV[15], ',')) end
if m > 0 then
  local after = math.max(tonumber(ARGV[11]), tonumber(ARGV[12]))
  local low = tonumber(redis.call('HGET', meta, 'low')) or 1
  if after + 1 < low then return {'retry', after} end
  local most = tonumber(ARGV[14])
  local found, reached = query_positions(KEYS[2], ARGV[8], ARGV[9], items_at(17, m), after, head,
    most, tonumber(ARGV[13]))
  -- The conflicts named are the first `most` after `after`, as when one step checked it all.
  if #found >= most or (#found > 0 and reached >= head) then return conflict(found) end
  if #found > 0 then return {'retry', found[1] - 1} end
  if reached < head then return {'retry', reached} end
end
local s = {meta = meta, log = KEYS[2], streams = KEYS[3], created = KEYS[4], updated = KEYS[5],
  times = KEYS[6], offsets = KEYS[7], stream_prefix = ARGV[7], type_prefix = ARGV[8],
  tag_prefix = ARGV[9], channel = ARGV[3], publish = ARGV[4], uid = uid, now = ARGV[1],
  now_ms = ARGV[6], tsec = tsec, head = head}
local events = events_of(ARGV[tail_at], ARGV[tail_at + 2], tonumber(ARGV[tail_at + 1]))
local version = stream_version(s, ARGV[10])
local first, last = write_events(s, ARGV[10], version, events, ARGV[tail_at])
if ttl > 0 then
  redis.call('SET', KEYS[8],
    uid .. '|D' .. US .. ARGV[5] .. US .. first .. US .. last .. US .. version, 'EX', ttl)
end
return {'ok', first, last, version}
