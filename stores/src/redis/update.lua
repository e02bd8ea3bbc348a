-- Applies a key-level patch to a live session and sets its expiry, in one
-- atomic step. Only the fields the patch names are written; a session that
-- is absent or expired is left absent (a logout is never undone).
--
-- KEYS[1]  the session's key
-- ARGV[1]  the layout marker field
-- ARGV[2]  the caller's clock, Unix milliseconds
-- ARGV[3]  the new expiry in Unix milliseconds, or '' for none
-- ARGV[4]  '1' if the patch starts by clearing every field, else '0'
-- ARGV[5]  n, the number of fields set
-- ARGV[6 .. 5 + 2n]     field, value pairs to set
-- ARGV[6 + 2n .. #ARGV] fields to remove
--
-- Returns 1 if the patch was applied, 0 (and writes nothing) otherwise.

local key, marker, now, expires_at = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]

if redis.call('TYPE', key).ok ~= 'hash' or redis.call('HEXISTS', key, marker) == 0 then
  return 0
end
local current = redis.call('PEXPIRETIME', key)
if current >= 0 and current <= now then
  return 0
end

if expires_at ~= '' and tonumber(expires_at) <= now then
  -- The patched session would already be over: it simply ends.
  redis.call('UNLINK', key)
  return 1
end

if ARGV[4] == '1' then
  -- Clearing drops every field but the marker; deleting the key and writing
  -- the marker back is the one-step way to do that.
  local marker_value = redis.call('HGET', key, marker)
  redis.call('UNLINK', key)
  redis.call('HSET', key, marker, marker_value)
end

local sets = tonumber(ARGV[5])
local i = 6
for _ = 1, sets do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', key, ARGV[i])
  i = i + 1
end

if expires_at == '' then
  redis.call('PERSIST', key)
else
  redis.call('PEXPIREAT', key, expires_at)
end
return 1
