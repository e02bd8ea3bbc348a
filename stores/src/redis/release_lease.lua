-- Ends a lease if the given token still holds it (compare and delete).
--
-- KEYS[1]  the lease key, <prefix>{<store key>}:lease
-- ARGV[1]  the token
--
-- Returns 1 if the lease was released, 0 otherwise.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
