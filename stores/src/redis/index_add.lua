-- Adds a session to its user's index, or raises its entry's bound. Runs
-- before the session write it covers, so the index always holds at least
-- the live sessions.
--
-- KEYS[1]  the user's index, <prefix>user:{<user>}
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the clock-skew margin, milliseconds
-- ARGV[3]  the store key
-- ARGV[4]  the bound on its expiry: Unix ms, or 'inf'
-- ARGV[5]  until when the addition counts as recent (now + 2 × grace)

local key, now, margin, member, bound, recent = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
if bound == 'inf' then
  bound = '+inf'
end
redis.call('ZADD', key, 'GT', bound, member)
redis.call('ZADD', key, 'GT', recent, '+' .. member)
trim(key, now, margin)
return 1
