-- Matching a DCB query against a store's type and tag indexes (lists of globalPositions,
-- ascending, kept by lib/write.lua), shared by dcb_append.lua and dcb_query.lua. The cost is in
-- proportion to the indexed positions after `after` that could match, never a scan of the log:
-- a binary search finds where `after` falls in a list, then only what follows is read.
--
-- Bounded: one call examines at most `budget` candidates (positions taken from an index list,
-- each checked against its log entry when the lists alone do not decide it), plus one per item,
-- and says how far it got. Besides, per list it walks: one binary search and reads of at most
-- CHUNK positions, no more than the item's share of the budget asks. Redis runs one script at a time and serves no one meanwhile, so the
-- caller (broker/log.py, whose DCB_BUDGET is the budget) goes on from there in another call.
--
-- Items arrive in ARGV as: types joined by US (types may hold commas), tags joined by ','.

local CHUNK = 100

-- The index in list `key` (of `len` positions; nil: read it) of its first position after `after`.
local function first_after(key, after, len)
  local lo, hi = 0, len or redis.call('LLEN', key)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if tonumber(redis.call('LINDEX', key, mid)) > after then hi = mid else lo = mid + 1 end
  end
  return lo
end

local function split(text, sep)
  local out = {}
  if text == '' then return out end
  for part in string.gmatch(text, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

local function items_at(start, m)
  local items = {}
  for i = 0, m - 1 do
    local types, set = split(ARGV[start + 2 * i], '\31'), nil
    if #types > 0 then
      set = {}
      for _, t in ipairs(types) do set[t] = true end
    end
    items[i + 1] = {types = types, set = set, tags = split(ARGV[start + 2 * i + 1], ',')}
  end
  return items
end

-- Whether log entry `p` has one of the item's types (if any) and every one of its tags.
local function entry_matches(log, p, item)
  local entry = redis.call('XRANGE', log, p .. '-0', p .. '-0')[1]
  if not entry then return false end
  local f = entry[2]
  if item.set and not item.set[f[4]] then return false end
  if #item.tags == 0 then return true end
  local have = {}
  if #f == 10 then
    for tag in string.gmatch(f[8], '[^,]+') do have[tag] = true end
  end
  for _, tag in ipairs(item.tags) do
    if not have[tag] then return false end
  end
  return true
end

-- Where an item's candidates come from: its shortest tag list, or the lists of its types (OR
-- within an item: their union), whichever holds fewer positions; the lists' lengths and their
-- total; and whether each candidate must be checked against its log entry (not when types alone
-- decide). Each list's length is read once here (a call from Lua costs about a microsecond).
local function sources(type_prefix, tag_prefix, item)
  local type_keys, type_lens, type_len = {}, {}, 0
  for i, t in ipairs(item.types) do
    type_keys[i] = type_prefix .. t
    type_lens[i] = redis.call('LLEN', type_keys[i])
    type_len = type_len + type_lens[i]
  end
  if #item.tags == 0 then return type_keys, type_lens, type_len, false end
  local best, best_len = nil, nil
  for _, tag in ipairs(item.tags) do
    local n = redis.call('LLEN', tag_prefix .. tag)
    if best == nil or n < best_len then best, best_len = tag_prefix .. tag, n end
  end
  if #item.types > 0 and type_len < best_len then return type_keys, type_lens, type_len, true end
  return {best}, {best_len}, best_len, true
end

-- Cursors over the positions after `after` in the lists `keys` (of lengths `lens`), read `chunk`
-- at a time; a list with nothing after `after` is done at once (no read).
local function cursors(keys, lens, after, chunk)
  local lists = {}
  for i, key in ipairs(keys) do
    local index = first_after(key, after, lens[i])
    lists[i] = {key = key, index = index, buf = {}, at = 1, chunk = chunk, done = index >= lens[i]}
  end
  return lists
end

-- The lowest next position of the lists, taken (nil: none left). Lists of different types hold
-- different positions (an event has one type), and the lowest first merges them ascending.
local function take(lists)
  local best, lowest = nil, nil
  for _, list in ipairs(lists) do
    if list.at > #list.buf and not list.done then
      list.buf = redis.call('LRANGE', list.key, list.index, list.index + list.chunk - 1)
      list.index, list.at, list.done = list.index + #list.buf, 1, #list.buf < list.chunk
    end
    local p = tonumber(list.buf[list.at])
    if p and (lowest == nil or p < lowest) then best, lowest = list, p end
  end
  if best then best.at = best.at + 1 end
  return lowest
end

-- One item's matches in (after, bound], at most `limit`, ascending, examining at most `budget`
-- candidates (at least one); and how far the item is decided: `bound` when its candidates ran
-- out, else the last position examined (the limit reached, or the budget spent).
local function walk(log, plan, after, bound, limit, budget)
  local lists, found, spent = cursors(plan.keys, plan.lens, after, math.min(CHUNK, budget + 1)),
    {}, 0
  while true do
    local p = take(lists)
    if p == nil or p > bound then return found, bound, spent end
    if spent >= budget then return found, p - 1, spent end
    spent = spent + 1
    if not plan.check or entry_matches(log, p, plan.item) then
      found[#found + 1] = p
      if #found >= limit then return found, p, spent end
    end
  end
end

-- Up to `limit` positions matching any item, ascending, without repeats, all in (after,
-- reached]; and `reached`: everything in (after, reached] was examined (`head` when the whole
-- range was). Items with the fewest candidates go first, each with an even share of what is
-- left of `budget`, so a short item leaves the rest to a long one; an item that stops early
-- lowers `reached` for those after it, which then walk no further.
local function query_positions(log, type_prefix, tag_prefix, items, after, head, limit, budget)
  local plans = {}
  for i, item in ipairs(items) do
    local keys, lens, size, check = sources(type_prefix, tag_prefix, item)
    plans[i] = {item = item, keys = keys, lens = lens, size = size, check = check}
  end
  table.sort(plans, function(a, b) return a.size < b.size end)
  local reached, left, all = math.max(head, after), budget, {}
  for i, plan in ipairs(plans) do
    local share = math.max(1, math.floor(left / (#plans - i + 1)))
    local found, upto, spent = walk(log, plan, after, reached, limit, share)
    left, reached = left - spent, math.min(reached, upto)
    for _, p in ipairs(found) do all[#all + 1] = p end
  end
  table.sort(all)
  local out = {}
  for _, p in ipairs(all) do
    if p > reached or #out >= limit then break end
    if p ~= out[#out] then out[#out + 1] = p end
  end
  return out, reached
end
