-- Deletes a session only if it is live and belongs to the given user (or
-- is that user's session caught between the two steps of a rename).
--
-- KEYS[1]  the session's key
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the user, as the JSON text of the user field
-- ARGV[3]  the name of the field holding the session's user
--
-- Returns { 'no' }, { 'deleted', user JSON of its index entry or '' }, or
-- { 'moved', new store key, user JSON of the old index entry or '' }.

local key, now, user, user_field = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
local head = fields_of(key, MARKER, INDEX, MOVED_TO, MOVED_USER, user_field)
local _, indexed_user = parse_index(head[2])
if is(head[1], MOVED) then
  if not is(head[4], user) then
    return { 'no' }
  end
  redis.call('UNLINK', key)
  return { 'moved', head[3], indexed_user or '' }
end
if live_expiry(redis.call('PEXPIRETIME', key), head[1], now) == nil or not is(head[5], user) then
  return { 'no' }
end
redis.call('UNLINK', key)
return { 'deleted', indexed_user or '' }
