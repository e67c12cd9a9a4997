-- wrk script: Alertmanager-shaped webhooks of 10 alerts each. Fingerprints cycle through
-- 2,000 per thread (4,000 episodes in all), so the run mixes new episodes with the repeated
-- notifications that dominate real Alertmanager traffic (group_interval, repeat_interval, HA).
-- BENCH_DISTINCT=1 makes every body's bytes unique (a sequence number in a field the
-- receiver keeps but does not use), so none is a byte-for-byte repeat of an earlier one.
local counter = 0
-- A global, not a local: setup() below gives each thread its own through thread:set, which
-- writes the thread's global after the script has loaded (a local here would shadow it, and
-- every thread would send the same fingerprints and sequence numbers).
offset = 0
local token = os.getenv("BENCH_TOKEN") or ""
local distinct = os.getenv("BENCH_DISTINCT") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local alert = [[{"status":"firing","labels":{"alertname":"CheckoutHigh5xx","namespace":"shop",]]
  .. [["deployment":"checkout","severity":"critical","pod":"checkout-%d","region":"eu-west-1"},]]
  .. [["annotations":{"summary":"5xx ratio above 1%% for 5m","runbook_url":"https://runbooks/5xx"},]]
  .. [["startsAt":"2026-11-26T10:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z",]]
  .. [["generatorURL":"http://prometheus:9090/graph?g0.expr=job%%3Aerrors%%3Aratio5m","fingerprint":"%016x"}]]

local head = [[{"version":"4","groupKey":"{}:{alertname=\"CheckoutHigh5xx\"}","truncatedAlerts":0,]]
  .. [["status":"firing","receiver":"backstop","groupLabels":{"alertname":"CheckoutHigh5xx"},]]
  .. [["commonLabels":{"namespace":"shop"},"commonAnnotations":{},]]
  .. [["externalURL":"http://alertmanager:9093","alerts":[%s]}]]

local threads = 0
function setup(thread)
  thread:set("offset", threads * 1000000)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local alerts = {}
  for k = 0, 9 do
    alerts[#alerts + 1] = string.format(alert, k, offset + (counter * 10 + k) % 2000)
  end
  local body = string.format(head, table.concat(alerts, ","))
  if distinct then
    body = string.format('{"benchSequence":%d,', offset + counter) .. string.sub(body, 2)
  end
  return wrk.format(nil, nil, nil, body)
end
