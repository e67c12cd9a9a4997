-- Record a batch of alert notifications atomically, in one round trip.
--
-- KEYS[1]  sorted set: episode id -> last activity (ms), the index of recent episodes
-- KEYS[2]  stream of accepted events
-- KEYS[3+] one hash per event: the episode's state
-- ARGV[1..6] now_ms, episode_ttl_s, max_episodes, events_max_len, events_min_id, episode key prefix
-- then 7 values per event: id, status, starts_at, ends_at, source, alertname, event_json
--
-- Returns one verdict per event: 1 a new firing episode, 2 the first resolved notification
-- of an episode, 0 a duplicate (repeat, HA peer, resend) that must not be processed again.

local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local max_episodes = tonumber(ARGV[3])
local max_len = ARGV[4]
local min_id = ARGV[5]
local prefix = ARGV[6]
local per_event = 7
local verdicts = {}

for i = 0, (#ARGV - 6) / per_event - 1 do
  local a = 6 + i * per_event
  local id, status, starts, ends = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local source, alertname, event = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local key = KEYS[3 + i]
  local previous = redis.call('HGET', key, 'status')
  local verdict = 0
  if not previous then
    redis.call('HSET', key, 'id', id, 'status', status, 'source', source,
      'alertname', alertname, 'starts_at', starts, 'ends_at', ends,
      'first_seen', now, 'last_seen', now, 'notifications', 1, 'event', event)
    if status == 'resolved' then
      redis.call('HSET', key, 'resolved_at', now)
      verdict = 2
    else
      verdict = 1
    end
  else
    redis.call('HINCRBY', key, 'notifications', 1)
    redis.call('HSET', key, 'last_seen', now)
    if status == 'resolved' and previous == 'firing' then
      redis.call('HSET', key, 'status', 'resolved', 'ends_at', ends, 'resolved_at', now,
        'event', event)
      verdict = 2
    end
  end
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', KEYS[1], now, id)
  if verdict ~= 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', max_len, '*',
      'episode', id, 'status', status, 'event', event)
  end
  verdicts[#verdicts + 1] = verdict
end

-- Bound memory whatever arrives: forget index entries whose hash has expired, then evict
-- the least recently active episodes beyond the cap, then trim old events.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl * 1000)
local excess = redis.call('ZCARD', KEYS[1]) - max_episodes
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    redis.call('DEL', prefix .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
redis.call('XTRIM', KEYS[2], 'MINID', '~', min_id)
return verdicts
