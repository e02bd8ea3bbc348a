#!lua flags=no-writes
-- Reads one session in one step, so the expiry and the fields belong together.
--
-- KEYS[1]  the session's key
-- ARGV[1]  the caller's clock, Unix milliseconds
--
-- Returns nil when there is no live session hash under KEYS[1] (absent, of
-- another type, or expired by the caller's clock), otherwise
-- { expiry in Unix ms or -1 for none, { field, value, field, value, ... } }.
-- The fields include the layout marker; the caller checks it.

if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then
  return false
end
local expires_at = redis.call('PEXPIRETIME', KEYS[1])
if expires_at >= 0 and expires_at <= tonumber(ARGV[1]) then
  return false
end
return { expires_at, redis.call('HGETALL', KEYS[1]) }
