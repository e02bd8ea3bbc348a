-- Moves a live session's expiry; the fields are not rewritten.
--
-- KEYS[1]  the session's key
-- ARGV[1]  the layout marker field
-- ARGV[2]  the caller's clock, Unix milliseconds
-- ARGV[3]  the new expiry in Unix milliseconds, or '' for none
--
-- Returns 1 if the session existed, 0 (and writes nothing) otherwise.

local key, marker, now, expires_at = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]

if redis.call('TYPE', key).ok ~= 'hash' or redis.call('HEXISTS', key, marker) == 0 then
  return 0
end
local current = redis.call('PEXPIRETIME', key)
if current >= 0 and current <= now then
  return 0
end

if expires_at == '' then
  redis.call('PERSIST', key)
elseif tonumber(expires_at) <= now then
  -- Already over: the session ends now rather than lingering until
  -- Redis's own clock agrees.
  redis.call('UNLINK', key)
else
  redis.call('PEXPIREAT', key, expires_at)
end
return 1
