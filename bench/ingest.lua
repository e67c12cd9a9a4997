-- wrk script: Alertmanager-shaped webhooks of 10 alerts each, in one of three modes
-- (BENCH_MODE):
--   repeat   (P1) fingerprints cycle through 2,000 per thread (4,000 episodes in all), so the
--            run mixes new episodes with the repeated notifications that dominate real
--            Alertmanager traffic (group_interval, repeat_interval, HA); bodies repeat.
--   distinct (P1-distinct) the same alerts, but every body's bytes are unique (a sequence
--            number in a field the receiver keeps but does not use), so none is a
--            byte-for-byte repeat of an earlier one.
--   fresh    (P1-fresh) every alert has a fingerprint never sent before: every alert is a
--            new episode, recorded and decided.
-- BENCH_RUN (a number) makes sequence numbers and fresh fingerprints unique across runs
-- against one Redis, so a round never repeats an earlier round's alerts.
local counter = 0
-- A global, not a local: setup() below gives each thread its own through thread:set, which
-- writes the thread's global after the script has loaded (a local here would shadow it, and
-- every thread would send the same fingerprints and sequence numbers).
offset = 0
local token = os.getenv("BENCH_TOKEN") or ""
local mode = os.getenv("BENCH_MODE") or "repeat"
-- 2^24 per run and 2^23 per thread: far more than a thread sends in a run (about 10^5
-- alerts), and every number stays below 2^31, which LuaJIT's string.format("%x") needs.
local run = (tonumber(os.getenv("BENCH_RUN") or "0") % 127) * 16777216
-- BENCH_INSTANCE=1 (bench/peer.py) adds an `instance` label unique to each fingerprint: a
-- peer that keys alerts by resource (alerta takes `instance`) then sees as many distinct
-- alerts as Backstop sees episodes, not all of them as one. Off, the bodies are unchanged.
local instance = os.getenv("BENCH_INSTANCE") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- No token, no header: a peer without authentication (bench/peer.py's alerta, as it ships)
-- would read any Bearer header as a token to check and refuse the request.
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local alert = [[{"status":"firing","labels":{"alertname":"CheckoutHigh5xx","namespace":"shop",]]
  .. [["deployment":"checkout","severity":"critical","pod":"checkout-%d",%s"region":"eu-west-1"},]]
  .. [["annotations":{"summary":"5xx ratio above 1%% for 5m","runbook_url":"https://runbooks/5xx"},]]
  .. [["startsAt":"2026-11-26T10:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z",]]
  .. [["generatorURL":"http://prometheus:9090/graph?g0.expr=job%%3Aerrors%%3Aratio5m","fingerprint":"%016x"}]]

local head = [[{"version":"4","groupKey":"{}:{alertname=\"CheckoutHigh5xx\"}","truncatedAlerts":0,]]
  .. [["status":"firing","receiver":"backstop","groupLabels":{"alertname":"CheckoutHigh5xx"},]]
  .. [["commonLabels":{"namespace":"shop"},"commonAnnotations":{},]]
  .. [["externalURL":"http://alertmanager:9093","alerts":[%s]}]]

local threads = 0
function setup(thread)
  thread:set("offset", threads * 8388608)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local alerts = {}
  for k = 0, 9 do
    local fingerprint
    if mode == "fresh" then
      fingerprint = run + offset + counter * 10 + k
    else
      fingerprint = offset + (counter * 10 + k) % 2000
    end
    local extra = instance and string.format('"instance":"checkout-%016x",', fingerprint) or ""
    alerts[#alerts + 1] = string.format(alert, k, extra, fingerprint)
  end
  local body = string.format(head, table.concat(alerts, ","))
  if mode == "distinct" then
    body = string.format('{"benchSequence":%d,', run + offset + counter) .. string.sub(body, 2)
  end
  return wrk.format(nil, nil, nil, body)
end
