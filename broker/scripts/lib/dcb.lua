-- Matching a DCB query against a store's type and tag indexes (lists of globalPositions,
-- ascending, kept by lib/write.lua), shared by dcb_append.lua and dcb_query.lua. The cost is in
-- proportion to the indexed positions after `after` that could match, never a scan of the log:
-- a binary search finds where `after` falls in a list, then only what follows is read.
--
-- Items arrive in ARGV as: types joined by US (types may hold commas), tags joined by ','.

local function first_after(key, after)
  local lo, hi = 0, redis.call('LLEN', key)
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

-- Up to `limit` positions after `after` that match `item`, ascending.
local function item_positions(log, type_prefix, tag_prefix, item, after, limit)
  local out = {}
  if #item.tags > 0 then
    -- Walk the shortest of the item's tag lists; check each candidate's type and other tags.
    local best, best_len = nil, nil
    for _, tag in ipairs(item.tags) do
      local n = redis.call('LLEN', tag_prefix .. tag)
      if best == nil or n < best_len then best, best_len = tag_prefix .. tag, n end
    end
    local index = first_after(best, after)
    while #out < limit and index < best_len do
      for _, p in ipairs(redis.call('LRANGE', best, index, index + 99)) do
        if entry_matches(log, p, item) then
          out[#out + 1] = tonumber(p)
          if #out >= limit then break end
        end
      end
      index = index + 100
    end
    return out
  end
  -- Types alone: every position in their lists after `after` matches.
  for _, t in ipairs(item.types) do
    local key = type_prefix .. t
    local index = first_after(key, after)
    for _, p in ipairs(redis.call('LRANGE', key, index, index + limit - 1)) do
      out[#out + 1] = tonumber(p)
    end
  end
  table.sort(out)
  while #out > limit do table.remove(out) end
  return out
end

-- Up to `limit` positions after `after` matching any item, ascending, without repeats.
local function query_positions(log, type_prefix, tag_prefix, items, after, limit)
  local seen, all = {}, {}
  for _, item in ipairs(items) do
    for _, p in ipairs(item_positions(log, type_prefix, tag_prefix, item, after, limit)) do
      if not seen[p] then
        seen[p] = true
        all[#all + 1] = p
      end
    end
  end
  table.sort(all)
  while #all > limit do table.remove(all) end
  return all
end
