-- Count a decision into the page that covers it, in one round trip.
--
-- KEYS[1]  hash of the decision's own page group: first, last (decision ids), count
-- KEYS[2]  counter of page groups opened in this window
-- KEYS[3]  hash of the window's overflow group for this reason (used beyond the limit)
-- ARGV[1]  decision id, ARGV[2] ttl (s) of all three keys, ARGV[3] page groups per window
--
-- Returns {overflowed (0/1), the covering group's first decision id, its count}.

local target = KEYS[1]
local overflowed = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  local opened = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if opened > tonumber(ARGV[3]) then
    target = KEYS[3]
    overflowed = 1
  end
end
redis.call('HSETNX', target, 'first', ARGV[1])
redis.call('HSET', target, 'last', ARGV[1])
local count = redis.call('HINCRBY', target, 'count', 1)
redis.call('EXPIRE', target, ARGV[2])
return {overflowed, redis.call('HGET', target, 'first'), count}
