-- Removes stale entries from a user's index: sessions the caller saw gone,
-- expired, or another user's, at `observed`. An entry added again since
-- `observed - grace` is kept, since its session may be about to be
-- written (an index addition precedes its session write by less than the
-- grace); so is everything when the observation is older than the grace.
--
-- KEYS[1]  the user's index
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the clock-skew margin, milliseconds
-- ARGV[3]  when the caller observed the sessions, Unix ms (its clock)
-- ARGV[4]  the grace, milliseconds
-- ARGV[5 ..] the store keys
--
-- Returns how many entries it removed.

local key, now, margin, observed, grace = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if now - observed > grace then
  return 0
end
local removed = 0
for i = 5, #ARGV do
  local member = ARGV[i]
  local recent = redis.call('ZSCORE', key, '+' .. member)
  if not recent or tonumber(recent) <= observed + grace then
    removed = removed + redis.call('ZREM', key, member)
    redis.call('ZREM', key, '+' .. member)
  end
end
trim(key, now, margin)
if redis.call('ZCARD', key) == 0 then
  redis.call('UNLINK', key)
end
return removed
