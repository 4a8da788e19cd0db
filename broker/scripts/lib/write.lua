-- The append machinery, shared by every script that appends (append.lua, streams_append.lua,
-- dcb_append.lua): the one place that writes events to a store's log, its indexes, its time
-- index and its announcement. broker/redis.py puts this file in front of those scripts.
--
-- Layout it keeps (names from broker/keys.py, passed in as prefixes):
--   log entry 'g-0'     fields s (streamId), t (type), p (streamPosition), g (tags, comma-joined,
--                       only when there are any), e (the event's JSON after its positions)
--   stream index        s.stream_prefix .. streamId: list of globalPositions (streamPosition
--                       offset + k is entry k; the offset is in s.offsets)
--   type, tag indexes   s.type_prefix .. type, s.tag_prefix .. tag: lists of globalPositions,
--                       ascending (what DCB conditions and queries read, lib/dcb.lua); the
--                       prefixes themselves are sets of the types and tags in use
--   time index          first globalPosition of each second, scored by epoch ms
-- Invariant: globalPositions are head+1 .. head+n with no gaps.

local function meta_state(meta)
  local state = redis.call('HMGET', meta, 'uid', 'head', 'tsec')
  return state[1], tonumber(state[2]), tonumber(state[3]) or 0
end

-- The store an append writes to: its uid, head and time-index second, and 1 when this append
-- created it (auto_uid: the uid for auto-create, '' when the store must exist). nil: no store.
local function open_store(meta, now, auto_uid)
  local uid, head, tsec = meta_state(meta)
  if uid then return uid, head, tsec, 0 end
  if auto_uid == '' then return nil end
  redis.call('HSET', meta, 'uid', auto_uid, 'createdAt', now, 'head', 0, 'settings', '{}')
  return auto_uid, 0, tsec, 1
end

-- What an earlier append with this idempotency key recorded, if it was made in this incarnation
-- of the store (the record starts with the store's uid); nil otherwise.
local function replay_record(key, uid)
  local prev = redis.call('GET', key)
  if not prev then return nil end
  local bar = string.find(prev, '|', 1, true)
  if string.sub(prev, 1, bar - 1) ~= uid then return nil end
  return string.sub(prev, bar + 1)
end

-- Whether a stream at ``version`` meets the expected version ('any' | 'no_stream' |
-- 'stream_exists' | decimal).
local function version_ok(expected, version)
  if expected == 'any' then return true end
  if expected == 'no_stream' then return version == 0 end
  if expected == 'stream_exists' then return version > 0 end
  return tonumber(expected) == version
end

local function stream_version(s, sid)
  return redis.call('LLEN', s.stream_prefix .. sid)
    + (tonumber(redis.call('HGET', s.offsets, sid)) or 0)
end

-- Push each group's positions to its index list, and name the lists in the registry (a set)
-- so that deleting the store finds them.
local function push_grouped(prefix, registry, groups, order)
  if #order == 0 then return end
  for _, name in ipairs(order) do redis.call('RPUSH', prefix .. name, unpack(groups[name])) end
  redis.call('SADD', registry, unpack(order))
end

-- Append ``events`` ({type, body, tags} each; tags comma-joined or '') to stream ``sid`` at
-- ``version``; ``tail`` is the announcement's tail as the client joined it. Moves s.head.
-- Returns first, last, the stream's version after.
local function write_events(s, sid, version, events, tail)
  local head = s.head
  local positions = {}
  local by_type, types, by_tag, tags = {}, {}, {}, {}
  local bytes = 0
  for i, ev in ipairs(events) do
    local gp = string.format('%d', head + i)
    local sp = string.format('%d', version + i - 1)
    if ev[3] ~= '' then
      redis.call('XADD', s.log, gp .. '-0', 's', sid, 't', ev[1], 'p', sp, 'g', ev[3], 'e', ev[2])
      for tag in string.gmatch(ev[3], '[^,]+') do
        if not by_tag[tag] then by_tag[tag] = {}; tags[#tags + 1] = tag end
        local list = by_tag[tag]
        list[#list + 1] = gp
      end
    else
      redis.call('XADD', s.log, gp .. '-0', 's', sid, 't', ev[1], 'p', sp, 'e', ev[2])
    end
    if not by_type[ev[1]] then by_type[ev[1]] = {}; types[#types + 1] = ev[1] end
    local list = by_type[ev[1]]
    list[#list + 1] = gp
    positions[i] = gp
    bytes = bytes + #ev[2]
  end
  redis.call('RPUSH', s.stream_prefix .. sid, unpack(positions))
  push_grouped(s.type_prefix, s.type_prefix, by_type, types)
  push_grouped(s.tag_prefix, s.tag_prefix, by_tag, tags)
  local first, last = head + 1, head + #events
  local second = math.floor(tonumber(s.now_ms) / 1000)
  if second > s.tsec then
    redis.call('ZADD', s.times, s.now_ms, string.format('%d', first))
    s.tsec = second
  end
  redis.call('HSET', s.meta, 'head', string.format('%d', last), 'tsec', string.format('%d', s.tsec))
  redis.call('HINCRBY', s.meta, 'bytes', bytes)
  if version == 0 then
    redis.call('ZADD', s.streams, first, sid)
    redis.call('HSET', s.created, sid, s.now)
  end
  redis.call('HSET', s.updated, sid, s.now)
  -- The announcement: first globalPosition, stream, append time, first streamPosition, the
  -- store's epoch (its uid: a listener tells a re-created store from the one it followed), then
  -- the client's tail; receivers put the positions into each body (codec.decode_announcement).
  local sep = '\31'
  redis.call(s.publish, s.channel, string.format('%d', first) .. sep .. sid .. sep .. s.now_ms
    .. sep .. string.format('%d', version) .. sep .. s.uid .. sep .. tail)
  s.head = last
  return first, last, version + #events
end

-- ``n`` events as write_events takes them, read from ``tail`` (the announcement's tail as the
-- client joined it: type US body US type US body ...) and ``tags`` (each event's tags
-- comma-joined, the events' joined by US; '' when no event has any). Types, tags and bodies hold
-- no control characters (validated; JSON escapes them), so US separates them. The client sends
-- each body once, in the tail, rather than also as arguments of its own: an argument per field
-- cost the client ~0.14 us each to pack (hiredis), and reading them here costs Redis less than
-- taking them in did (its CPU per event fell 5-25%, alternating runs of both on one host).
local function events_of(tail, tags, n)
  local events, at, tag_at = {}, 1, 1
  for i = 1, n do
    local sep = string.find(tail, '\31', at, true)
    local stop = string.find(tail, '\31', sep + 1, true) or #tail + 1
    local g = ''
    if tags ~= '' then
      local tag_stop = string.find(tags, '\31', tag_at, true) or #tags + 1
      g = string.sub(tags, tag_at, tag_stop - 1)
      tag_at = tag_stop + 1
    end
    events[i] = {string.sub(tail, at, sep - 1), string.sub(tail, sep + 1, stop - 1), g}
    at = stop + 1
  end
  return events
end
