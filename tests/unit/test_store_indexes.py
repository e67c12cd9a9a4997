"""Per-outcome and per-status indexes (24-hour counts, lists) and dashboard sessions,
on fakeredis."""

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from workers.models import Workload
from workers.records import Decision, Rollback, WorkloadRecord
from workers.store.decisions import DecisionStore
from workers.store.rollbacks import RollbackStore
from workers.store.sessions import MAX_FAILURES, SessionStore

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
CHECKOUT = WorkloadRecord.of(Workload("default", "shop", "Deployment", "checkout"))


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


def decision(i: int, outcome: str, created: datetime) -> Decision:
    return Decision(
        id=f"d{i}",
        episode_id=f"d{i}",
        starts_at=created,
        outcome=outcome,
        reason="x",
        created_at=created,
    )


def test_decisions_are_counted_by_their_current_outcome(client):
    store = DecisionStore(client)
    store.save(decision(1, "deferred", T0))
    store.save(decision(2, "awaiting_approval", T0))
    store.save(decision(3, "skipped", T0 - timedelta(days=2)))
    store.save(decision(1, "rollback", T0))  # the deferred one was decided later
    counts = store.counts(since=T0 - timedelta(hours=24))
    assert counts["rollback"] == 1 and counts["deferred"] == 0
    assert counts["awaiting_approval"] == 1 and counts["skipped"] == 0
    assert store.count_with("awaiting_approval") == 1
    assert [d.id for d in store.recent(outcome="rollback")] == ["d1"]
    store.save(decision(2, "skipped", T0))  # denied
    assert store.count_with("awaiting_approval") == 0
    assert set(store.get_many(["d1", "d2", "nope"])) == {"d1", "d2"}


def test_rollbacks_are_counted_and_listed_by_their_current_status(client):
    store = RollbackStore(client)
    running = Rollback(
        id="r1", decision_id="d1", workload=CHECKOUT, bad_revision="2", created_at=T0
    )
    store.save(running)
    store.save(running.model_copy(update={"id": "r2"}))
    store.save(running.model_copy(update={"status": "verified"}))
    counts = store.counts(since=T0 - timedelta(hours=1))
    assert counts["verified"] == 1 and counts["running"] == 1
    assert [r.id for r in store.recent(status="verified")] == ["r1"]
    assert [r.id for r in store.recent(status="running")] == ["r2"]


def test_sessions_live_hashed_and_end(client):
    store = SessionStore(client)
    session_id, session = store.create(
        user="ann", role="operator", via="password", ttl=timedelta(hours=1)
    )
    assert all(session_id not in key.decode() for key in client.keys("*"))
    found = store.get(session_id, ttl=timedelta(hours=1))
    assert found == session and len(found.csrf) >= 40
    assert store.get("forged", ttl=timedelta(hours=1)) is None
    store.end(session_id)
    assert store.get(session_id, ttl=timedelta(hours=1)) is None


def test_failed_logins_block_after_the_limit_and_success_clears(client):
    store = SessionStore(client)
    for _ in range(MAX_FAILURES - 1):
        store.login_failed("ann|1.2.3.4")
    assert not store.login_blocked("ann|1.2.3.4")
    store.login_failed("ann|1.2.3.4")
    assert store.login_blocked("ann|1.2.3.4") and not store.login_blocked("bob|1.2.3.4")
    store.login_succeeded("ann|1.2.3.4")
    assert not store.login_blocked("ann|1.2.3.4")
