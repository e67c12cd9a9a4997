"""The quarantine review (workers/quarantines.py) against the Jira double: an issue moved
to Done ends its quarantine, an expired one is recorded as ended, and Jira away changes
nothing until it answers."""

from datetime import timedelta

import pytest

from config.policy import Policy
from config.quarantine import QuarantinePolicy
from core.integrations.jira import Tickets
from core.records import Incident, Quarantine, WorkloadRecord, utcnow
from core.store import Store
from tests import samples
from workers.freezes import next_review
from workers.quarantines import review_quarantines

pytestmark = pytest.mark.integration


def quarantine(name: str, **fields) -> Quarantine:
    now = utcnow()
    values = {
        "id": f"rb-{name}",
        "workload": WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name=name
        ),
        "revision": "2",
        "images": [f"shop/{name}:2"],
        "decision_id": f"d-{name}",
        "quarantined_at": now - timedelta(hours=1),
        "expires_at": now + timedelta(days=14),
    }
    return samples.quarantine(**{**values, **fields})


@pytest.fixture
def store(redis_client):
    return Store(redis_client, Policy())


@pytest.fixture
def tickets(jira_server):
    return Tickets(url=jira_server.url, user=jira_server.email, token=jira_server.api_token)


def filed(store, tickets, name: str) -> str:
    """A Jira issue for the quarantine's rollback, as the incident job files it."""
    key = tickets.create(
        project="OPS",
        issue_type="Incident",
        summary=f"rollback of {name}",
        description="d",
        labels=[],
        priority=None,
    )
    incident = Incident(id=f"rb-{name}", key="k")
    incident.jira.ref = key
    store.incidents.save(incident)
    return key


def test_an_issue_moved_to_done_ends_its_quarantine(store, tickets):
    store.quarantine.add(quarantine("checkout"))
    store.quarantine.add(quarantine("cart"))
    done = filed(store, tickets, "checkout")
    filed(store, tickets, "cart")  # still open
    first = review_quarantines(store, tickets, QuarantinePolicy(), utcnow())
    assert first == {"ended": {"expired": 0, "issue_done": 0}, "active": 2}
    assert tickets.transition(issue_key=done, name="Done")
    second = review_quarantines(store, tickets, QuarantinePolicy(), utcnow())
    assert second == {"ended": {"expired": 0, "issue_done": 1}, "active": 1}
    ended = store.quarantine.get("rb-checkout")
    assert (ended.end, ended.ended_by, ended.end_reason) == (
        "issue_done",
        "jira",
        f"{done} is done",
    )
    # Switched off, a done issue ends nothing.
    assert tickets.transition(issue_key=filed(store, tickets, "cart"), name="Done")
    off = QuarantinePolicy(release_when_done=False)
    assert review_quarantines(store, tickets, off, utcnow())["active"] == 1


def test_an_expired_quarantine_is_recorded_as_ended(store):
    store.quarantine.add(quarantine("old", expires_at=utcnow() - timedelta(seconds=1)))
    summary = review_quarantines(store, None, QuarantinePolicy(), utcnow())
    assert summary == {"ended": {"expired": 1, "issue_done": 0}, "active": 0}
    assert store.quarantine.get("rb-old").end == "expired"


def test_jira_away_changes_nothing(store, tickets, jira_server):
    store.quarantine.add(quarantine("checkout"))
    key = filed(store, tickets, "checkout")
    tickets.transition(issue_key=key, name="Done")
    jira_server.stop()
    assert review_quarantines(store, tickets, QuarantinePolicy(), utcnow())["active"] == 1
    assert store.quarantine.get("rb-checkout").active


def test_reviews_fall_on_one_grid():
    now = utcnow()
    first = next_review(now, timedelta(minutes=5))
    assert first > now and int(first.timestamp()) % 300 == 0
    assert next_review(now + timedelta(seconds=1), timedelta(minutes=5)) in (
        first,
        first + timedelta(minutes=5),
    )
