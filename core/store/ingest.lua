-- Record a batch of alert notifications atomically, in one round trip.
--
-- KEYS[1]  sorted set: episode id -> last activity (ms), the index of recent episodes; the
--          score is also the episode's last_seen (accurate to touch_ms, see below)
-- KEYS[2]  stream of accepted events
-- KEYS[3+] one hash per event: the episode's state
-- ARGV[1..6] now_ms, episode_ttl_s, max_episodes, events_max_len, events_min_id, episode key prefix
-- ARGV[7]  the batch's small fields as one JSON array of [id, status, starts_at, ends_at,
--          source, alertname, count] (one argument, not seven per event: far cheaper to
--          send); count is how many notifications the entry stands for (a receiver that
--          wrote repeats behind sends them as one entry), 1 when absent
-- ARGV[8+] each event's record as JSON, passed as is (not nested in ARGV[7], which would
--          escape it twice); "" when the client believes the episode is already recorded in
--          this state, so repeats cost almost nothing to send.
--
-- Returns {verdicts, settled}, one of each per event. Verdicts: 1 a new firing episode, 2
-- the first resolved notification of an episode, 0 a duplicate that must not be processed
-- again, 3 "unknown after all: send this event again with its record" (the client's belief
-- was stale; nothing was written), 4 a repeat of a firing episode that was accepted but never
-- decided (the receiver that accepted it failed before recording its decision): decide it
-- now. The right to decide is claimed in the hash (decide_claim) for DECIDE_CLAIM_MS, so only
-- one receiver does. Settled: 1 when, after this call, the episode is resolved or its
-- decision is recorded, so a further repeat can only add to its counters (a receiver may
-- then write such repeats behind, see core/intake.py), else 0.

local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local max_episodes = tonumber(ARGV[3])
local max_len = ARGV[4]
local min_id = ARGV[5]
local prefix = ARGV[6]
local batch = cjson.decode(ARGV[7])
local decision_prefix = ARGV[8 + #batch]
local decide_claim_ms = tonumber(ARGV[9 + #batch])
-- A repeat refreshes the episode's TTL and index score at most this often: repeats then
-- cost two commands, and last activity stays accurate to this interval.
local touch_ms = tonumber(ARGV[10 + #batch])
local verdicts = {}
local settled = {}
local created = false

for i, entry in ipairs(batch) do
  local id, status, starts, ends = entry[1], entry[2], entry[3], entry[4]
  local source, alertname, event = entry[5], entry[6], ARGV[7 + i]
  local count = tonumber(entry[7] or 1)
  local key = KEYS[2 + i]
  local state = redis.call('HMGET', key, 'status', 'decide_claim', 'decided', 'touched')
  local previous = state[1]
  local decided = state[3]
  local verdict = 0
  if not previous and event == '' then
    verdict = 3
  elseif not previous then
    redis.call('HSET', key, 'id', id, 'status', status, 'source', source,
      'alertname', alertname, 'starts_at', starts, 'ends_at', ends,
      'first_seen', now, 'notifications', count, 'event', event, 'decide_claim', now,
      'touched', now)
    if status == 'resolved' then
      redis.call('HSET', key, 'resolved_at', now)
      verdict = 2
    else
      verdict = 1
    end
    created = true
  elseif status == 'resolved' and previous == 'firing' and event == '' then
    verdict = 3
  else
    redis.call('HINCRBY', key, 'notifications', count)
    if status == 'resolved' and previous == 'firing' then
      redis.call('HSET', key, 'status', 'resolved', 'ends_at', ends, 'resolved_at', now,
        'event', event)
      verdict = 2
    elseif previous == 'firing' and not state[3] then
      if redis.call('EXISTS', decision_prefix .. id) == 1 then
        redis.call('HSET', key, 'decided', 1)
        decided = '1'
      elseif now - tonumber(state[2] or 0) > decide_claim_ms then
        redis.call('HSET', key, 'decide_claim', now)
        verdict = 4
      end
    end
  end
  local stale = now - tonumber(state[4] or 0) >= touch_ms
  if verdict == 1 or verdict == 2 or verdict == 4 or (verdict == 0 and stale) then
    if previous then
      redis.call('HSET', key, 'touched', now)
    end
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', KEYS[1], now, id)
  end
  if verdict == 1 or verdict == 2 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', max_len, '*',
      'episode', id, 'status', status, 'event', event)
  end
  verdicts[#verdicts + 1] = verdict
  local resolved = previous == 'resolved' or verdict == 2
  if verdict ~= 3 and (resolved or (verdict == 0 and previous and decided)) then
    settled[#settled + 1] = 1
  else
    settled[#settled + 1] = 0
  end
end

-- Bound memory whatever arrives. Only creation grows the index and the stream, so the
-- trimming runs then: forget index entries whose hash has expired, evict the least
-- recently active episodes beyond the cap, and drop events older than the retention.
if created then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl * 1000)
  local excess = redis.call('ZCARD', KEYS[1]) - max_episodes
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
      redis.call('DEL', prefix .. old)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
  end
  redis.call('XTRIM', KEYS[2], 'MINID', '~', min_id)
end
return {verdicts, settled}
