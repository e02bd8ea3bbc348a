-- Writes a whole session record, replacing whatever was under the key: a
-- `set`, or step 2 of a rename (writing the moved record under its new key).
--
-- KEYS[1]  the session's key
-- ARGV[1]  the new expiry in Unix ms, or '' for none
-- ARGV[2]  the SIZE field: "<sum of per-field parts> <field count>"
-- ARGV[3]  the INDEX field ("<bound> <user JSON>"), or '' when no user
-- ARGV[4]  'set', or 'rename': then a tombstone under the key (the session
--          was deleted while it moved) wins, and nothing is written
-- ARGV[5 ..] field, value pairs (values are JSON text)
--
-- Returns { 'ok', user JSON whose index entry is now stale, or '' }, or
-- { 'gone' } for a rename whose session was deleted meanwhile.

local key, expires_at, size, index, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local head = fields_of(key, MARKER, INDEX)
if mode == 'rename' and is(head[1], GONE) then
  return { 'gone' }
end
local _, old_user = parse_index(head[2])
local _, new_user = parse_index(index)

redis.call('UNLINK', key)
local args = { MARKER, LAYOUT, SIZE, size }
if index ~= '' then
  args[#args + 1] = INDEX
  args[#args + 1] = index
end
for i = 5, #ARGV do
  args[#args + 1] = ARGV[i]
end
batched('HSET', key, args, BATCH)
if expires_at ~= '' then
  redis.call('PEXPIREAT', key, expires_at)
end

if old_user ~= nil and old_user ~= new_user then
  return { 'ok', old_user }
end
return { 'ok', '' }
