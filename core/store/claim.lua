-- Claim the rollback of one bad revision of one workload, atomically with every safety
-- check that depends on shared state, so concurrent receivers can never both pass them.
--
-- KEYS: 1 global pause hash, 2 workload pause hash, 3 workload's last-rollback time,
--       4 circuit hash, 5 rollback-times zset, 6 the claim key for (workload, revision)
-- ARGV: 1 now_ms, 2 cooldown_ms, 3 max_rollbacks, 4 window_ms, 5 decision id,
--       6 force ("1": a human approved; skip pause, cooldown and breaker, still count it),
--       7 claim ttl seconds
-- Returns {"ok"} or {"skipped", reason}.

local now = tonumber(ARGV[1])
local force = ARGV[6] == '1'

if redis.call('EXISTS', KEYS[6]) == 1 then
  return {'skipped', 'already_rolled_back'}
end
if not force then
  if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
    return {'skipped', 'paused'}
  end
  if redis.call('HGET', KEYS[4], 'state') == 'open' then
    return {'skipped', 'circuit_open'}
  end
  -- A claim stamped after `now` (another receiver's clock reads later) is no cooldown
  -- when there is none.
  local last = redis.call('GET', KEYS[3])
  local cooldown = tonumber(ARGV[2])
  if last and cooldown > 0 and now - tonumber(last) < cooldown then
    return {'skipped', 'cooldown'}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[4]))
  if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[3]) then
    -- The breaker trips: this and every further candidate waits for a human reset.
    redis.call('HSET', KEYS[4], 'state', 'open', 'opened_at', now,
      'reason', 'more than ' .. ARGV[3] .. ' rollbacks within the window')
    return {'skipped', 'circuit_open'}
  end
end
redis.call('SET', KEYS[6], ARGV[5], 'EX', tonumber(ARGV[7]))
redis.call('SET', KEYS[3], now)
redis.call('ZADD', KEYS[5], now, ARGV[5])
return {'ok'}
