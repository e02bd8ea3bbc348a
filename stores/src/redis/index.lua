-- Shared by the user index scripts. A user's index is one sorted set,
-- <prefix>user:{<user>}, so each index script touches one key (one slot):
--
--   <store key>    scored by a bound on that session's expiry (Unix ms, or
--                  +inf): the session lives at most until then, so entries
--                  past their score (with a margin for clock skew between
--                  app servers) are trimmed on every index write;
--   +<store key>   scored by (time the entry was last added + 2 × grace):
--                  a recent addition, whose session may not be written yet.
--                  Stale-entry repair leaves such entries alone.
--
-- The key itself expires at its highest score (plus the margin), so an
-- index nobody touches again vanishes with its last session.

-- Drops entries past their score; then expires the key with its last one.
local function trim(key, now, margin)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now - margin))
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then
    return
  end
  if top[2] == 'inf' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIREAT', key, string.format('%d', tonumber(top[2]) + margin))
  end
end
