-- Step 1 of a rename, on the old key's slot: if the session is live (and
-- the fence holds), applies the patch to its fields in memory, checks the
-- size limit, then replaces the session by a short-lived "moved" marker
-- naming the new key, and hands the patched fields to the caller, who
-- writes them under the new key (set.lua, mode 'rename'). From here on,
-- updates and touches of the old key find no session (they report
-- Missing, so nothing they acknowledge can be lost), and a delete or
-- revoke of it finds the marker and tombstones the new key.
--
-- KEYS[1]  the old session's key
-- KEYS[2]  its lease key (same slot)
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the new expiry in Unix milliseconds, or '' for none
-- ARGV[3]  '1' if the patch starts by clearing every field, else '0'
-- ARGV[4]  the size limit in bytes, or ''
-- ARGV[5]  the lease token fencing the patch, or ''
-- ARGV[6]  the name of the field holding the session's user
-- ARGV[7]  the new store key (text), recorded in the marker
-- ARGV[8]  how long the marker lives, in milliseconds
-- ARGV[9 ..] the changes (see read_changes)
--
-- Returns 'missing'; { 'refused', kind, key, a, b }; { 'ended', user JSON
-- of the old index entry or '' } when the new expiry has already passed
-- (the session is deleted); or { 'moved', SIZE field, user JSON of the old
-- index entry or '', user JSON after the patch or '', field, value, ... }.

local key, lease = KEYS[1], KEYS[2]
local now, expires_at, cleared, limit, fence, user_field, target, ttl =
  tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local expiry = redis.call('PEXPIRETIME', key)
local all = redis.pcall('HGETALL', key)
if all.err then
  return 'missing'
end
local fields, names, marker, index = {}, {}, nil, nil
for i = 1, #all, 2 do
  local name, value = all[i], all[i + 1]
  if string.byte(name, 1) == 255 then
    if name == MARKER then
      marker = value
    elseif name == INDEX then
      index = value
    end
  else
    fields[name] = value
    names[#names + 1] = name
  end
end
if live_expiry(expiry, marker, now) == nil then
  return 'missing'
end
if fence ~= '' and not is(redis.call('GET', lease), fence) then
  return refused('lease_lost')
end

local writes, err = apply(read_changes(ARGV, 9), function(name)
  if cleared then
    return nil
  end
  return fields[name]
end)
if err then
  return err
end
if cleared then
  fields, names = {}, {}
end
for _, write in ipairs(writes) do
  local name, text = write[1], write[2]
  if fields[name] == nil and text then
    names[#names + 1] = name
  end
  fields[name] = text or nil
end

local out, sum, count = {}, 0, 0
for _, name in ipairs(names) do
  local value = fields[name]
  if value then
    sum, count = sum + part(name, #value), count + 1
    pair(out, name, value)
  end
end
local size = serialized(sum, count)
if limit ~= '' and size > tonumber(limit) then
  return refused('too_large', '', string.format('%d', size), limit)
end

local _, old_user = parse_index(index)
if expires_at ~= '' and tonumber(expires_at) <= now then
  redis.call('UNLINK', key)
  return { 'ended', old_user or '' }
end
local user = user_text(fields[user_field]) or ''

redis.call('UNLINK', key)
local marker_fields = { MARKER, MOVED, MOVED_TO, target, MOVED_USER, user }
if index then
  pair(marker_fields, INDEX, index)
end
redis.call('HSET', key, unpack(marker_fields))
redis.call('PEXPIRE', key, ttl)

local reply = { 'moved', size_text(sum, count), old_user or '', user }
for i = 1, #out do
  reply[#reply + 1] = out[i]
end
return reply
