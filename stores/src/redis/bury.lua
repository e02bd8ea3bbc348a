-- Ends the session a rename is moving into this key, after its old key
-- was deleted: deletes it if step 2 already wrote it, and otherwise leaves
-- a tombstone so that step 2 writes nothing. If this key was itself
-- renamed further, the caller follows the chain.
--
-- KEYS[1]  the new session's key
-- ARGV[1]  how long a tombstone lives, in milliseconds
--
-- Returns { 'buried' }, { 'deleted', user JSON of its index entry or '' },
-- or { 'moved', next store key, user JSON of its index entry or '' }.

local key, ttl = KEYS[1], ARGV[1]
local head = fields_of(key, MARKER, INDEX, MOVED_TO)
local _, user = parse_index(head[2])
if is(head[1], LAYOUT) then
  redis.call('UNLINK', key)
  return { 'deleted', user or '' }
end
if is(head[1], MOVED) then
  redis.call('UNLINK', key)
  return { 'moved', head[3], user or '' }
end
if is(head[1], GONE) or redis.call('EXISTS', key) == 1 then
  -- Already buried, or something that is not ours: leave it.
  return { 'buried' }
end
redis.call('HSET', key, MARKER, GONE)
redis.call('PEXPIRE', key, ttl)
return { 'buried' }
