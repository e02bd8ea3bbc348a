#!lua flags=no-writes
-- Reads one session in one step, so the expiry and the fields belong together.
--
-- KEYS[1]  the session's key, <prefix>{<store key>}
-- ARGV[1]  the caller's clock, Unix milliseconds
--
-- Returns nil when nothing live is under KEYS[1] (absent, of another type,
-- or expired by the caller's clock), otherwise
-- { expiry in Unix ms or -1 for none, { field, value, field, value, ... } }.
-- The fields include the internal ones (names starting with byte 0xFF);
-- the caller checks the marker, which also tells a session from a rename's
-- "moved" marker or a tombstone (both read as absent).

local expiry = redis.call('PEXPIRETIME', KEYS[1])
if expiry == -2 or (expiry >= 0 and expiry <= tonumber(ARGV[1])) then
  return false
end
local fields = redis.pcall('HGETALL', KEYS[1])
if fields.err then
  return false
end
return { expiry, fields }
