-- Applies a patch to a live session and sets its expiry, in one atomic
-- step. Only the fields the patch names are read and written; a session
-- that is absent or expired is left absent (a logout is never undone).
-- Every check (fence, operations, size limit, index) comes before the
-- first write, so a refused patch writes nothing.
--
-- KEYS[1]  the session's key, <prefix>{<store key>}
-- KEYS[2]  its lease key, <prefix>{<store key>}:lease (same slot)
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the new expiry in Unix milliseconds, or '' for none
-- ARGV[3]  '1' if the patch starts by clearing every field, else '0'
-- ARGV[4]  the size limit in bytes of serialized JSON, or '' for none
-- ARGV[5]  the lease token fencing the patch, or '' for none
-- ARGV[6]  the name of the field holding the session's user
-- ARGV[7]  an INDEX field the caller has just made true, or ''
-- ARGV[8 ..] the changes (see read_changes)
--
-- Returns 'missing'; { 'refused', kind, key, a, b }; { 'reindex', user
-- JSON, expiry } when the user's index must first be raised (nothing
-- written); or { 'ok', user JSON whose index entry is now stale, or '' }.

local key, lease = KEYS[1], KEYS[2]
local now, expires_at, cleared, limit, fence, user_field, offered =
  tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local changes = read_changes(ARGV, 8)
-- One read for the head fields and, unless the patch is huge, every field
-- it names: their old values give the old lengths for the size and the
-- operations their input, without a call per field.
local names = { MARKER, SIZE, INDEX, user_field }
local prefetch = not cleared and #changes <= BATCH
if prefetch then
  for _, change in ipairs(changes) do
    names[#names + 1] = change.name
  end
end
local head = fields_of(key, unpack(names))
local current_expiry = live_expiry(redis.call('PEXPIRETIME', key), head[1], now)
if current_expiry == nil then
  return 'missing'
end
if fence ~= '' and not is(redis.call('GET', lease), fence) then
  return refused('lease_lost')
end

-- What the hash holds now, as far as read: text, or false for absent.
local known = {}
known[user_field] = head[4]
if prefetch then
  for i = 5, #names do
    known[names[i]] = head[i]
  end
end
local function stored(name)
  local value = known[name]
  if value == nil then
    value = redis.call('HGET', key, name)
    known[name] = value
  end
  return value or nil
end

local writes, err = apply(changes, function(name)
  if cleared then
    return nil
  end
  return stored(name)
end)
if err then
  return err
end

-- The size after the patch, from the running total.
local sum, count = 0, 0
if not cleared then
  local s, c = string.match(head[2] or '', '^(%d+) (%d+)$')
  if s then
    sum, count = tonumber(s), tonumber(c)
  else
    sum, count = recount(key)
  end
end
local user, user_touched = nil, false
for _, write in ipairs(writes) do
  local name, text = write[1], write[2]
  -- The name's share, counted once for both the old and the new value.
  local name_part = name_len(name) + 2
  if not cleared then
    local old = known[name]
    local old_len
    if old == nil then
      old_len = redis.call('HSTRLEN', key, name)
    elseif old then
      old_len = #old
    else
      old_len = 0
    end
    if old_len > 0 then
      sum, count = sum - (name_part + old_len), count - 1
    end
  end
  if text then
    sum, count = sum + (name_part + #text), count + 1
  end
  if name == user_field then
    user, user_touched = user_text(text), true
  end
end
local size = serialized(sum, count)
if limit ~= '' and size > tonumber(limit) then
  return refused('too_large', '', string.format('%d', size), limit)
end
if not user_touched and not cleared then
  user = user_text(head[4])
end

local new_expiry = nil
if expires_at ~= '' then
  new_expiry = tonumber(expires_at)
end
if new_expiry ~= nil and new_expiry <= now then
  -- The patched session would already be over: it simply ends.
  local _, indexed_user = parse_index(head[3])
  redis.call('UNLINK', key)
  return { 'ok', indexed_user or '' }
end
local ok, index, stale = index_plan(head[3], user, new_expiry, offered)
if not ok then
  return { 'reindex', user, expires_at }
end

-- Nothing can fail any more: write.
local sets, removes = { SIZE, size_text(sum, count) }, {}
if cleared then
  -- Deleting the key and writing the internal fields back is the
  -- one-step way to drop every field.
  redis.call('UNLINK', key)
  current_expiry = -1
  pair(sets, MARKER, LAYOUT)
  if index then
    pair(sets, INDEX, index)
  end
elseif index ~= head[3] then
  if index then
    pair(sets, INDEX, index)
  else
    removes[#removes + 1] = INDEX
  end
end
for _, write in ipairs(writes) do
  if write[2] then
    pair(sets, write[1], write[2])
  elseif not cleared and known[write[1]] ~= false then
    removes[#removes + 1] = write[1]
  end
end
batched('HSET', key, sets, BATCH)
if #removes > 0 then
  batched('HDEL', key, removes, BATCH)
end
expire_at(key, expires_at, current_expiry)
return { 'ok', stale }
