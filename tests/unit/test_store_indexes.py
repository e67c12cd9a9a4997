"""Per-outcome and per-status indexes (24-hour counts, lists) and dashboard sessions,
on fakeredis."""

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import redis

from core.models import Workload
from core.records import Decision, Rollback, WorkloadRecord
from core.store import keys
from core.store.decisions import DecisionStore
from core.store.rollbacks import RollbackStore
from core.store.sessions import SessionStore

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


def test_rollbacks_beyond_the_cap_go_with_their_evidence(client, monkeypatch):
    from core.store import rollbacks

    monkeypatch.setattr(rollbacks, "MAX_ROLLBACKS", 3)
    store = RollbackStore(client)
    for i in range(5):
        rollback = Rollback(
            id=f"r{i}",
            decision_id=f"d{i}",
            workload=CHECKOUT,
            bad_revision="2",
            created_at=T0 + timedelta(minutes=i),
        )
        store.save(rollback)
        store.save_evidence(rollback.id, {"pods": []})
        store.save(rollback.model_copy(update={"status": "verified"}))
    assert [r.id for r in store.recent(limit=10)] == ["r4", "r3", "r2"]
    assert store.get("r1") is None and store.evidence("r1") is None
    assert store.evidence("r2") == {"pods": []}
    assert store.counts(since=T0 - timedelta(hours=1))["verified"] == 3


def test_sessions_live_hashed_and_end(client):
    store, key, hour = SessionStore(client), b"k" * 32, timedelta(hours=1)
    session_id, session = store.create(
        user="ann", role="operator", via="password", stamp="s", ttl=hour, key=key
    )
    assert all(session_id not in key.decode() for key in client.keys("*"))
    found = store.get(session_id, ttl=hour, key=key)
    assert found == session and len(found.csrf) >= 40
    assert store.get("forged", ttl=hour, key=key) is None
    store.end(session_id)
    assert store.get(session_id, ttl=hour, key=key) is None


def test_failed_logins_block_after_the_limit_for_a_window(client):
    store, window = SessionStore(client), timedelta(minutes=15)
    for _ in range(9):
        store.login_failed("name:ann", window=window)
    assert not store.login_blocked(("name:ann", 10))
    store.login_failed("name:ann", window=window)
    assert store.login_blocked(("name:ann", 10)) and not store.login_blocked(("name:bob", 10))
    assert 0 < client.ttl("backstop:login-failures:name:ann") <= 900


def about(i: int, workload: WorkloadRecord | None, created: datetime) -> Decision:
    return decision(i, "skipped", created).model_copy(update={"workload": workload})


CART = WorkloadRecord.of(Workload("default", "shop", "Deployment", "cart"))


def test_a_workloads_decisions_are_read_from_its_own_index(client):
    store = DecisionStore(client)
    for i in range(300):  # checkout's three among many of others'
        named = CHECKOUT if i in (5, 150, 299) else CART if i % 2 else None
        store.save(about(i, named, T0 + timedelta(seconds=i)))
    found = store.recent(workload=CHECKOUT.workload().key, limit=10)
    assert [d.id for d in found] == ["d299", "d150", "d5"]
    index = client.zrange("backstop:decisions:workload:" + CHECKOUT.workload().key, 0, -1)
    assert index == [b"d5", b"d150", b"d299"]  # only its own: nothing else is read
    assert [d.id for d in store.recent(workload=CHECKOUT.workload().key, limit=2)] == [
        "d299",
        "d150",
    ]


def test_a_decision_that_moved_to_another_workload_is_only_found_there(client):
    store = DecisionStore(client)
    store.save(about(1, CHECKOUT, T0))
    store.save(about(1, CART, T0))  # correlated anew
    assert store.recent(workload=CHECKOUT.workload().key) == []
    assert [d.id for d in store.recent(workload=CART.workload().key)] == ["d1"]


def test_decisions_stored_before_the_workload_index_are_indexed_once(client):
    store = DecisionStore(client)
    for i in range(2500):  # more than a page of the upgrade's scan
        store.save(about(i, CHECKOUT if i % 10 == 0 else CART, T0 + timedelta(seconds=i)))
    # A store written by a Backstop without the index: no index, no marker.
    client.delete("backstop:decisions:workload-indexed")
    for key in client.keys("backstop:decisions:workload:*"):
        client.delete(key)
    assert store.ensure_workload_index() == 2500
    assert store.ensure_workload_index() == 0  # done: not again
    found = store.recent(workload=CHECKOUT.workload().key, limit=1000)
    assert len(found) == 250 and found[0].id == "d2490" and found[-1].id == "d0"


def test_an_unindexed_store_is_indexed_on_first_read(client):
    store = DecisionStore(client)
    store.save(about(1, CHECKOUT, T0))
    client.delete("backstop:decisions:workload-indexed")
    client.delete("backstop:decisions:workload:" + CHECKOUT.workload().key)
    assert [d.id for d in store.recent(workload=CHECKOUT.workload().key)] == ["d1"]


def test_workload_indexes_are_bounded_and_trimmed_with_the_decisions(client, monkeypatch):
    from core.store import decisions

    monkeypatch.setattr(decisions, "MAX_DECISIONS", 50)
    monkeypatch.setattr(decisions, "TRIM_SLACK", 0)
    monkeypatch.setattr(decisions, "MAX_PER_WORKLOAD", 20)
    store = DecisionStore(client)
    for i in range(60):
        store.save(about(i, CHECKOUT if i < 30 else CART, T0 + timedelta(seconds=i)))
    checkout = "backstop:decisions:workload:" + CHECKOUT.workload().key
    cart = "backstop:decisions:workload:" + CART.workload().key
    # checkout kept its newest 20 (d10-d29), then the store's cap of 50 dropped d0-d9.
    assert client.zrange(checkout, 0, -1) == [f"d{i}".encode() for i in range(10, 30)]
    assert client.zcard(cart) == 20
    assert client.zcard(keys.DECISIONS) == 50
    monkeypatch.setattr(decisions, "MAX_DECISIONS", 40)
    store.save(about(60, CART, T0 + timedelta(seconds=60)))  # trims d10-d20 from everywhere
    assert client.zrange(checkout, 0, -1) == [f"d{i}".encode() for i in range(21, 30)]


def test_decisions_are_trimmed_in_batches_past_the_slack(client, monkeypatch):
    from core.store import decisions

    monkeypatch.setattr(decisions, "MAX_DECISIONS", 20)
    monkeypatch.setattr(decisions, "TRIM_SLACK", 5)
    store = DecisionStore(client)
    for i in range(25):
        store.save(about(i, CHECKOUT, T0 + timedelta(seconds=i)))
    assert client.zcard(keys.DECISIONS) == 25  # within the slack: nothing evicted yet
    assert client.exists("backstop:decision:d0")
    client.set("backstop:decision:d1", b"{not a decision")  # unreadable: evicted all the same
    store.save(about(25, CHECKOUT, T0 + timedelta(seconds=25)))  # over it: back to the cap
    assert client.zcard(keys.DECISIONS) == 20
    assert not client.exists("backstop:decision:d5") and not client.exists("backstop:decision:d1")
    assert client.exists("backstop:decision:d6")
    # Every evicted id left the indexes of the workloads the readable ones named.
    index = "backstop:decisions:workload:" + CHECKOUT.workload().key
    assert client.zrange(index, 0, -1) == [f"d{i}".encode() for i in range(6, 26)]


def test_a_worker_indexes_an_old_store_at_start_and_starts_when_redis_is_down(client, caplog):
    from workers.worker import _upgrade_store

    DecisionStore(client).save(about(1, CHECKOUT, T0))
    client.delete("backstop:decisions:workload-indexed")
    client.delete("backstop:decisions:workload:" + CHECKOUT.workload().key)
    _upgrade_store(client)
    assert client.exists("backstop:decisions:workload-indexed")
    assert client.zcard("backstop:decisions:workload:" + CHECKOUT.workload().key) == 1
    down = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    _upgrade_store(down)  # logs, does not raise: the first job that needs it builds it
    assert "store not upgraded at start: ConnectionError" in caplog.text


def test_decisions_saved_later_in_a_batch_are_written_together_when_it_ends(client):
    store = DecisionStore(client)
    with store.batched():
        store.save(decision(1, "deferred", T0), later=True)
        store.save(decision(2, "skipped", T0), later=True)
        store.save(decision(1, "rollback", T0), later=True)  # saved again: the last wins
        assert client.zcard(keys.DECISIONS) == 0  # nothing written yet
        store.save(decision(3, "skipped", T0))  # not `later`: written at once
        assert client.zcard(keys.DECISIONS) == 1
    assert client.zcard(keys.DECISIONS) == 3
    counts = store.counts(since=T0 - timedelta(hours=1))
    assert counts["rollback"] == 1 and counts["deferred"] == 0 and counts["skipped"] == 2
    assert store.get("d1").outcome == "rollback"


def test_a_batched_decision_is_saved_as_it_was_and_read_back_inside_its_batch(client):
    store = DecisionStore(client)
    with store.batched():
        saved = decision(1, "deferred", T0)
        store.save(saved, later=True)
        saved.outcome = "rollback"  # changed after its save, not saved again
        assert store.get("d1").outcome == "deferred"  # a read writes what is held first
        assert set(store.get_many(["d1"])) == {"d1"}
    assert store.get("d1").outcome == "deferred"


def test_a_batch_left_by_an_exception_writes_nothing_and_outside_one_later_is_now(client):
    store = DecisionStore(client)
    with pytest.raises(redis.exceptions.ConnectionError), store.batched():
        store.save(decision(1, "deferred", T0), later=True)
        with store.batched():  # nested: the outer batch holds
            store.save(decision(2, "deferred", T0), later=True)
        raise redis.exceptions.ConnectionError("Redis went away mid-webhook")
    assert store.get("d1") is None and store.get("d2") is None
    store.save(decision(3, "deferred", T0), later=True)  # no batch open: written now
    assert store.get("d3") is not None
