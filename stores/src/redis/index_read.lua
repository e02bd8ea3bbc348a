-- Lists the store keys in a user's index, after trimming lapsed entries.
--
-- KEYS[1]  the user's index
-- ARGV[1]  the caller's clock, Unix milliseconds
-- ARGV[2]  the clock-skew margin, milliseconds

local key = KEYS[1]
trim(key, tonumber(ARGV[1]), tonumber(ARGV[2]))
local members, out = redis.call('ZRANGE', key, 0, -1), {}
for _, member in ipairs(members) do
  if string.sub(member, 1, 1) ~= '+' then
    out[#out + 1] = member
  end
end
return out
