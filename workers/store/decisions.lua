-- Save decisions and their indexes in one step (one round trip for a whole webhook's
-- decisions, where a pipeline would send and parse eight commands for each).
--
-- For each decision: its record, its place in the index of all decisions, and in exactly
-- one per-outcome index (it leaves the others: an update can change the outcome). In
-- order, so a later decision with the same id wins.
--
-- KEYS[1]            sorted set of all decisions (id -> created ms)
-- KEYS[2 .. 1+n]     the per-outcome sorted sets, n = ARGV[1]
-- KEYS[2+n ..]       one record key per decision
-- ARGV[1]            n
-- ARGV[2 ..]         four per decision: id, created ms, its outcome's position among the
--                    per-outcome sets (1-based), the record (JSON)
--
-- Returns how many decisions KEYS[1] holds now (the caller trims beyond its cap).

local n = tonumber(ARGV[1])
for d = 1, #KEYS - 1 - n do
  local at = 2 + (d - 1) * 4
  local id, created, outcome = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  redis.call('SET', KEYS[1 + n + d], ARGV[at + 3])
  redis.call('ZADD', KEYS[1], created, id)
  for o = 1, n do
    if o == outcome then
      redis.call('ZADD', KEYS[1 + o], created, id)
    else
      redis.call('ZREM', KEYS[1 + o], id)
    end
  end
end
return redis.call('ZCARD', KEYS[1])
