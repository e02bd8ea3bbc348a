-- Moves a live session's expiry; the data fields are not rewritten.
--
-- KEYS[1]  the session's key
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the new expiry in Unix milliseconds, or '' for none
-- ARGV[3]  the name of the field holding the session's user
-- ARGV[4]  an INDEX field the caller has just made true, or ''
--
-- Returns 'missing' (nothing written) when there is no live session;
-- { 'reindex', user JSON, expiry } (nothing written) when the user's index
-- must first be raised to cover the new expiry; otherwise
-- { 'ok', user JSON whose index entry is now stale, or '' }.

local key, now, expires_at, user_field, offered = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]

local head = fields_of(key, MARKER, INDEX, user_field)
local current = live_expiry(redis.call('PEXPIRETIME', key), head[1], now)
if current == nil then
  return 'missing'
end

local new_expiry = nil
if expires_at ~= '' then
  new_expiry = tonumber(expires_at)
end
if new_expiry ~= nil and new_expiry <= now then
  -- Already over: the session ends now rather than lingering until
  -- Redis's own clock agrees.
  local _, indexed_user = parse_index(head[2])
  redis.call('UNLINK', key)
  return { 'ok', indexed_user or '' }
end

local user = user_text(head[3])
local ok, index, stale = index_plan(head[2], user, new_expiry, offered)
if not ok then
  return { 'reindex', user, expires_at }
end
if index ~= head[2] then
  if index then
    redis.call('HSET', key, INDEX, index)
  else
    redis.call('HDEL', key, INDEX)
  end
end
expire_at(key, expires_at, current)
return { 'ok', stale }
