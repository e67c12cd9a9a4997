"""R5/R8: hostile webhooks are bounded in Redis bytes, and the store at its caps in a budget.

A maximal hostile webhook is as large as the body limit allows (1 MiB) and as many alerts
as a webhook may carry (1,000), every one a kill switch about a workload of its own: each
is an episode, an event, a decision and index entries, and would page. The bounds are the
limits per request of docs/api.md (the HTTP interface):

- PER_WEBHOOK: what one such webhook may add to Redis's used_memory (measured 6.8 MB: about
  seven bytes stored per byte received);
- AT_CAPS: the store at the default caps (100,000 episodes, events and decisions) when every
  alert is as large as BACKSTOP_MAX_ALERT_BYTES allows, estimated from the bytes one such
  alert costs (measured about 24 KB).
"""

import json
from datetime import UTC, datetime, timedelta

import pytest

from config.intake import IntakePolicy
from config.policy import Policy
from core import queues
from core.store.decisions import MAX_DECISIONS
from tests.conftest import WEBHOOK_TOKEN

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PER_WEBHOOK = 8 * MIB
AT_CAPS = 3 * 1024 * MIB
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
STARTS = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")


def hostile(hook: int, count: int, label_bytes: int, annotation_bytes: int = 0) -> bytes:
    """`count` distinct kill switches, each about a workload of its own."""
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "K",
                "namespace": f"n{hook}",
                "deployment": str(i),
                "backstop_rollback": "true",
                "pad": "p" * label_bytes,
            },
            "annotations": {"description": "d" * annotation_bytes} if annotation_bytes else {},
            "generatorURL": "http://prometheus/graph?g0.expr=" + "x" * annotation_bytes,
            "startsAt": STARTS,
        }
        for i in range(count)
    ]
    return json.dumps({"alerts": alerts}, separators=(",", ":")).encode()


def used(redis_client) -> int:
    return int(redis_client.info("memory")["used_memory"])


def post(client, body: bytes):
    response = client.post(
        "/webhooks/alertmanager", data=body, content_type="application/json", headers=HEADERS
    )
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    return response


def test_twenty_maximal_hostile_webhooks_grow_redis_by_a_bounded_amount(app, redis_client):
    client = app.test_client()
    first = hostile(0, 1000, 820)
    assert MIB - 16 * 1024 < len(first) <= MIB  # as large as the body limit allows
    post(client, first)  # the first webhook also loads scripts and creates the indexes
    before = used(redis_client)
    for hook in range(1, 21):
        post(client, hostile(hook, 1000, 820))
    growth = used(redis_client) - before
    print(f"20 maximal webhooks: Redis grew {growth / MIB:.1f} MiB")
    assert growth <= 20 * PER_WEBHOOK, f"{growth / MIB:.1f} MiB for 20 webhooks"
    # 21,000 decisions that would each page: a bounded number of pages.
    incidents = queues.queue(redis_client, queues.INCIDENTS)
    pages = [job_id for job_id in incidents.job_ids if job_id.startswith("page-")]
    paging = Policy().incidents.pagerduty
    assert len(pages) <= paging.max_pages_per_window + 1


def test_the_default_caps_fit_in_the_documented_budget(app, redis_client):
    client = app.test_client()
    post(client, hostile(0, 10, 100))  # scripts loaded, indexes created
    count = 45
    # Labels at their limit (half the alert budget), the rest cut to fit.
    body = hostile(1, count, 4000, annotation_bytes=8000)
    before = used(redis_client)
    post(client, body)
    per_alert = (used(redis_client) - before) / count
    caps = IntakePolicy()
    most = max(caps.max_episodes, caps.events_max_len, MAX_DECISIONS)
    print(f"{per_alert:.0f} bytes per maximal alert: {per_alert * most / MIB:.0f} MiB at caps")
    assert per_alert * most <= AT_CAPS, f"{per_alert:.0f} bytes per maximal alert"
