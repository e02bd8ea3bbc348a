-- Deletes whatever session is under a key, and says what the caller must
-- follow up: the user index entry that is now stale, or, for a session
-- caught between the two steps of a rename, the new key to tombstone.
-- A tombstone itself is left in place: it must outlive the rename it stops.
--
-- KEYS[1]  the session's key
--
-- Returns { 'none' }, { 'deleted', user JSON of its index entry or '' }, or
-- { 'moved', new store key, user JSON of the old index entry or '' }.

local key = KEYS[1]
local head = fields_of(key, MARKER, INDEX, MOVED_TO)
if is(head[1], GONE) then
  return { 'none' }
end
local _, user = parse_index(head[2])
if redis.call('UNLINK', key) == 0 then
  return { 'none' }
end
if is(head[1], MOVED) then
  return { 'moved', head[3], user or '' }
end
return { 'deleted', user or '' }
