-- Add repeats a receiver wrote behind to their episodes' counters, in one round trip.
--
-- Every entry is a repeat of an episode the receiver saw recorded and settled (resolved, or
-- its decision recorded), so all it may change is the count, and the TTL and last activity
-- at most once per touch_ms, exactly as ingest.lua does for a repeat.
--
-- A flush is applied at most once: its token is kept (token_ttl_ms), and a flush whose
-- answer was lost (the connection dropped after Redis ran it) and that is sent again with
-- the same token changes nothing.
--
-- KEYS[1]  sorted set: episode id -> last activity (ms)
-- KEYS[2]  this flush's token key
-- KEYS[3+] one episode hash per entry
-- ARGV[1..5] now_ms, episode_ttl_s, touch_ms, episode key prefix, token_ttl_ms
-- ARGV[6+] two per entry: how many notifications, and their status (firing / resolved)
--
-- Returns {-1} when this flush was applied before. Else the positions (1-based) of entries
-- this script did not record, because they are not plain repeats after all: the episode is
-- gone (evicted, expired, lost in a failover), or it is firing while the notification says
-- resolved. The caller sends those through ingest.lua, which records them as it would any
-- notification.

local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local touch_ms = tonumber(ARGV[3])
local prefix_len = #ARGV[4]
local others = {}

if redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[5]) == false then
  return {-1}
end

for i = 3, #KEYS do
  local key = KEYS[i]
  local count, status = ARGV[2 * i], ARGV[2 * i + 1]
  local state = redis.call('HMGET', key, 'status', 'touched')
  if not state[1] or (status == 'resolved' and state[1] ~= 'resolved') then
    others[#others + 1] = i - 2
  else
    redis.call('HINCRBY', key, 'notifications', count)
    if now - tonumber(state[2] or 0) >= touch_ms then
      redis.call('HSET', key, 'touched', now)
      redis.call('EXPIRE', key, ttl)
      redis.call('ZADD', KEYS[1], now, string.sub(key, prefix_len + 1))
    end
  end
end
return others
