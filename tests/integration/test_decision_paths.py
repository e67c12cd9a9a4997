"""Every documented outcome, and every correlation status, reached through a real webhook.

The list of outcomes is read from README.md ("How Backstop decides"), and the statuses from
`core.correlation.Status`, so neither the documentation nor the code can grow a path
that no webhook reaches (a path that answered 500 went unnoticed this way once).
"""

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from config.policy import Policy
from core import queues
from core.correlation import Status, correlate
from core.decisions import Engine
from core.models import Workload
from core.records import Rollout, WorkloadRecord
from core.vocabulary import REASONS
from receiver.app import create_app
from receiver.state import EXTENSION
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

README = Path(__file__).resolve().parents[2] / "README.md"
AM = "/webhooks/alertmanager"
CHECKOUT = Workload("default", "shop", "Deployment", "checkout")
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def documented_outcomes() -> list[str]:
    """Every `outcome: reason` of the README's decision table."""
    text = README.read_text()
    section = text.split("## How Backstop decides", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    found = []
    for row in rows:
        for outcome, reason in re.findall(r"`(\w+): (\w+)`", row.rsplit("|", 2)[-2]):
            found.append(f"{outcome}: {reason}")
    return sorted(set(found))


class Harness:
    """One receiver app with its own policy, and a clock-free way to stage history."""

    def __init__(self, make_settings, **policy):
        self.app = create_app(make_settings(), policy=Policy.model_validate(policy))
        self.client = self.app.test_client()
        self.state = self.app.extensions[EXTENSION]
        self.now = datetime.now(UTC)
        self.sent = 0

    def deploy(self, revision: str, minutes_ago: float, previous: str | None = "auto", **extra):
        if previous == "auto":
            previous = str(int(revision) - 1)
        rollout = Rollout(
            workload=WorkloadRecord.of(extra.pop("workload", CHECKOUT)),
            revision=revision,
            previous_revision=previous,
            started_at=self.now - timedelta(minutes=minutes_ago),
            sources=["watcher"],
            **extra,
        )
        self.state.store.rollouts.record_observed(rollout, merge_window=timedelta(minutes=10))

    def alert(self, minutes_ago: float = 5, status: str = "firing", **labels) -> dict:
        """An alert about checkout that is a kill switch, unless labels say otherwise."""
        self.sent += 1
        fingerprint = labels.pop("fingerprint", f"fp{self.sent}")
        starts = self.now - timedelta(minutes=minutes_ago)
        return {
            "status": status,
            "labels": {
                "alertname": "CheckoutHigh5xx",
                "namespace": "shop",
                "deployment": "checkout",
                "backstop_rollback": "true",
                **labels,
            },
            "annotations": {"summary": "5xx above 1%"},
            "startsAt": starts.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else self.now.isoformat(),
            "fingerprint": fingerprint,
        }

    def send(self, *alerts: dict) -> list[dict]:
        body = {"version": "4", "status": "firing", "receiver": "backstop", "alerts": alerts}
        response = self.client.post(
            AM, data=json.dumps(body), content_type="application/json", headers=HEADERS
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()["decisions"]

    def outcome(self, *alerts: dict) -> str:
        decision = self.send(*alerts)[-1]
        return f"{decision['outcome']}: {decision['reason']}"


# -- one staged path per documented outcome ------------------------------------------------


def not_kill_switch(h):
    return h.outcome(h.alert(backstop_rollback="false"))


def no_workload(h):
    alert = h.alert()
    del alert["labels"]["namespace"]
    return h.outcome(alert)


def unknown_cluster(h):
    return h.outcome(h.alert(cluster="elsewhere"))


def no_recent_deployment(h):
    h.deploy("3", minutes_ago=45)  # outside the 30m lookback
    return h.outcome(h.alert())


def predates_deployment(h):
    h.deploy("3", minutes_ago=2)  # after the alert began (5m ago), beyond the clock skew
    return h.outcome(h.alert())


def ambiguous(h):
    h.deploy("2", minutes_ago=20)
    h.deploy("3", minutes_ago=10)
    return h.outcome(h.alert())


def judging_candidates(h):
    h.deploy("2", minutes_ago=20)
    h.deploy("3", minutes_ago=10)
    outcome = h.outcome(h.alert())
    # The worker judges each candidate (workers/candidates.py), then decides again.
    jobs = queues.queue(h.state.store.redis, queues.DECISIONS).get_job_ids()
    assert [j for j in jobs if j.startswith("candidates-")], jobs
    return outcome


# A service that judges revisions: an error ratio per revision ($hash).
JUDGING_POLICY = {
    "mode": "enforce",
    "services": [
        {
            "name": "checkout",
            "match": {"deployment": "checkout"},
            "judgment": {"kpis": [{"name": "5xx", "query": 'errors{hash="$hash"}'}]},
        }
    ],
}


def first_revision(h):
    h.deploy("1", minutes_ago=10, previous=None)  # the workload was created 10m ago
    return h.outcome(h.alert())


def rollback_of_rollback(h):
    h.deploy("4", minutes_ago=10, by_backstop=True, rollback_of="3")
    return h.outcome(h.alert())


def already_rolled_back(h):
    h.deploy("3", minutes_ago=12)
    assert h.outcome(h.alert()) == "rollback: enqueued"
    return h.outcome(h.alert(alertname="CheckoutLatency"))


def paused(h):
    h.deploy("3", minutes_ago=12)
    h.state.store.automation.pause(workload=None, actor="alice", reason="upgrade", now=h.now)
    return h.outcome(h.alert())


def deferred(h):
    h.deploy("3", minutes_ago=12)
    return h.outcome(h.alert(minutes_ago=0.5))  # younger than min_firing (2m)


def resolved(h):
    h.deploy("3", minutes_ago=12)
    firing = h.alert(minutes_ago=0.5, fingerprint="flap")
    assert h.outcome(firing) == "deferred: min_firing"
    return h.outcome({**firing, "status": "resolved", "endsAt": h.now.isoformat()})


def cooldown(h):
    h.state.store.automation.claim_rollback(
        workload=CHECKOUT,
        revision="2",
        decision_id="earlier",
        now=h.now - timedelta(minutes=15),
        cooldown=timedelta(minutes=30),
        max_rollbacks=100,
        window=timedelta(hours=1),
    )
    h.deploy("3", minutes_ago=12)
    return h.outcome(h.alert())


def circuit_open(h):
    cart = Workload("default", "shop", "Deployment", "cart")
    h.deploy("3", minutes_ago=12)
    h.deploy("7", minutes_ago=12, workload=cart)
    assert h.outcome(h.alert()) == "rollback: enqueued"
    return h.outcome(h.alert(deployment="cart"))


def enqueued(h):
    h.deploy("3", minutes_ago=12)
    return h.outcome(h.alert())


def denied(h):
    h.deploy("3", minutes_ago=12)
    [waiting] = h.send(h.alert())
    assert waiting["outcome"] == "awaiting_approval"
    answer = h.client.post(
        f"/api/v1/decisions/{waiting['id']}/deny",
        json={"reason": "false alarm"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    decision = answer.get_json()
    return f"{decision['outcome']}: {decision['reason']}"


class RaisingEngine(Engine):
    """Backstop's engine, with a bug for alerts named Boom (an unexpected exception)."""

    def on_firing(self, *, episode_id, labels, starts_at):
        if labels.get("alertname") == "Boom":
            raise ValueError("a bug in a rule")
        return super().on_firing(episode_id=episode_id, labels=labels, starts_at=starts_at)


def with_raising_engine(h: Harness) -> Harness:
    """Swap the app's engine for one that raises for one label set (before any request)."""
    engine = RaisingEngine(
        store=h.state.store,
        policy=h.state.policy,
        connection=h.state.store.redis,
        clock=h.state.engine.clock,
    )
    h.app.extensions[EXTENSION] = dataclasses.replace(h.state, engine=engine)
    h.state = h.app.extensions[EXTENSION]
    return h


def internal_error(h):
    with_raising_engine(h)
    return h.outcome(h.alert(alertname="Boom"))


# outcome: reason -> (policy, the path that reaches it)
PATHS = {
    "skipped: not_kill_switch": ({}, not_kill_switch),
    "skipped: no_workload": ({}, no_workload),
    "skipped: unknown_cluster": ({}, unknown_cluster),
    "skipped: no_recent_deployment": ({}, no_recent_deployment),
    "skipped: predates_deployment": ({}, predates_deployment),
    "skipped: ambiguous": ({}, ambiguous),
    "deferred: judging_candidates": (JUDGING_POLICY, judging_candidates),
    "skipped: first_revision": ({}, first_revision),
    "skipped: rollback_of_rollback": ({}, rollback_of_rollback),
    "skipped: already_rolled_back": ({"mode": "enforce"}, already_rolled_back),
    "skipped: paused": ({"mode": "enforce"}, paused),
    "deferred: min_firing": ({"mode": "enforce"}, deferred),
    "skipped: resolved": ({"mode": "enforce"}, resolved),
    "skipped: cooldown": ({"mode": "enforce"}, cooldown),
    "skipped: circuit_open": (
        {"mode": "enforce", "circuit_breaker": {"max_rollbacks": 1, "window": "1h"}},
        circuit_open,
    ),
    "dry_run: would_roll_back": ({"mode": "dry-run"}, enqueued),
    "awaiting_approval: approval_required": ({"mode": "approve"}, enqueued),
    "skipped: denied": ({"mode": "approve"}, denied),
    "rollback: enqueued": ({"mode": "enforce"}, enqueued),
    "skipped: internal_error": ({"mode": "enforce"}, internal_error),
}

# Each status correlate() can return, and the documented outcome whose path produces it.
STATUS_PATHS = {
    "match": "rollback: enqueued",
    "none": "skipped: no_recent_deployment",
    "predates": "skipped: predates_deployment",
    "ambiguous": "skipped: ambiguous",
    "first_revision": "skipped: first_revision",
}


@pytest.mark.parametrize("outcome", documented_outcomes())
def test_every_documented_outcome_is_reached_by_a_webhook(make_settings, outcome):
    assert outcome in PATHS, f"README documents {outcome!r}, but no test path reaches it"
    policy, path = PATHS[outcome]
    assert path(Harness(make_settings, **policy)) == outcome


# Reasons the rollback job gives a decision after its judgment, never a webhook: reached in
# tests/integration/test_judgment.py.
JUDGMENT_REASONS = {"not_caused_by_rollout", "judgment_inconclusive"}


def test_every_path_here_is_documented_in_the_one_vocabulary():
    assert set(PATHS) == set(documented_outcomes())
    assert {path.split(": ")[1] for path in PATHS} | JUDGMENT_REASONS == set(REASONS)


@pytest.mark.parametrize("status", get_args(Status))
def test_every_correlation_status_is_decided_over_http(make_settings, status):
    assert status in STATUS_PATHS, f"correlate() can return {status!r}: add a path for it"
    policy, path = PATHS[STATUS_PATHS[status]]
    harness = Harness(make_settings, **policy)
    assert path(harness) == STATUS_PATHS[status]
    # The path really went through that status (not an earlier check's outcome).
    timing = harness.state.policy.timing(None)
    rollouts = harness.state.store.rollouts.for_workload(CHECKOUT)
    found = correlate(harness.now - timedelta(minutes=5), rollouts, timing)
    assert found.status == status


def test_a_decision_that_raises_does_not_take_its_batch_down(make_settings, redis_client, caplog):
    harness = with_raising_engine(Harness(make_settings, mode="enforce"))
    harness.deploy("3", minutes_ago=12)
    before, boom, after = (
        harness.alert(alertname="NotAKillSwitch", backstop_rollback="false"),
        harness.alert(alertname="Boom"),
        harness.alert(),
    )
    with caplog.at_level("ERROR", logger="backstop.intake"):
        decisions = harness.send(before, boom, after)
    assert [(d["outcome"], d["reason"]) for d in decisions] == [
        ("skipped", "not_kill_switch"),
        ("skipped", "internal_error"),
        ("rollback", "enqueued"),
    ]
    stored = harness.state.store.decisions.get(decisions[1]["id"])
    assert stored.reason == "internal_error" and "ValueError" in stored.detail
    # Logged with its traceback, and a human is paged about it.
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info[0] is ValueError
    page_jobs = [
        job_id
        for job_id in queues.queue(redis_client, queues.INCIDENTS).job_ids
        if job_id.startswith("page-")
    ]
    assert len(page_jobs) == 1
    job = queues.queue(redis_client, queues.INCIDENTS).fetch_job(page_jobs[0])
    assert job.kwargs["decision_id"] == decisions[1]["id"]
    # The episode is decided: its repeat is a duplicate, not a second try.
    again = harness.client.post(
        AM,
        data=json.dumps({"version": "4", "alerts": [boom]}),
        content_type="application/json",
        headers=HEADERS,
    )
    assert again.get_json()["duplicates"] == 1


def test_redis_down_during_a_decision_is_503_and_not_a_decision(make_settings, redis_client):
    harness = Harness(make_settings, mode="enforce")
    harness.deploy("3", minutes_ago=12)

    def redis_gone(workload, **_):
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError("gone")

    harness.state.store.rollouts.for_workload = redis_gone
    body = {"version": "4", "alerts": [harness.alert()]}
    response = harness.client.post(
        AM, data=json.dumps(body), content_type="application/json", headers=HEADERS
    )
    assert response.status_code == 503
    assert redis_client.keys("backstop:decision:*") == []
