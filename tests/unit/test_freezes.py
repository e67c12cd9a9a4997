"""The freeze review (workers/freezes.py) and its scheduling, on a real Redis, with a fake
hand: which freezes end, how, who is named, what is audited, and what thaw errors do."""

from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from config.policy import Policy
from config.settings import Settings
from core import queues
from core.errors import TransientError
from core.integrations.kubernetes import NotFound
from core.records import FrozenOwner, OwnerRecord, WorkloadRecord
from core.store import Store, keys
from workers import freezes, jobs
from workers.context import Context
from workers.owners import Hand

NOW = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


class FakeHand(Hand):
    """A hand that says what it is told and records what it thawed."""

    def __init__(self, moved: str = "", thaw_error: Exception | None = None):
        super().__init__(situation=None)  # type: ignore[arg-type]
        self.moved, self.thaw_error = moved, thaw_error
        self.thawed: list[str] = []
        self.asked: list[str] = []

    def moved_past(self, freeze: FrozenOwner) -> str:
        self.asked.append(freeze.id)
        if isinstance(self.moved, Exception):
            raise self.moved
        return self.moved

    def thaw(self, freeze: FrozenOwner) -> None:
        if self.thaw_error is not None:
            raise self.thaw_error
        self.thawed.append(freeze.id)


@pytest.fixture
def store(redis_client) -> Store:
    return Store(redis_client, Policy())


def frozen(
    name: str = "shop", *, expires_in: timedelta = timedelta(days=3), now=NOW, **fields
) -> FrozenOwner:
    """An active freeze of Application argocd/<name>, made an hour before `now`."""
    return FrozenOwner(
        id=FrozenOwner.key("argoproj.io/v1alpha1", "Application", "argocd", name),
        api_version="argoproj.io/v1alpha1",
        kind="Application",
        namespace="argocd",
        name=name,
        how="auto-sync disabled",
        owner=OwnerRecord(kind="argocd", namespace="argocd", name=name, found_by="test"),
        workload=WorkloadRecord(cluster="default", namespace="shop", kind="Deployment", name=name),
        rollback_id=f"rollback-{name}",
        bad_revision="7",
        reason=f"rollback rollback-{name}",
        frozen_at=now - timedelta(hours=1),
        expires_at=now + expires_in,
        **fields,
    )


def review(store, hands: dict[str, FakeHand] | FakeHand) -> dict:
    def hand_for(freeze: FrozenOwner) -> Hand:
        return hands if isinstance(hands, FakeHand) else hands[freeze.name]

    return freezes.review_freezes(store, hand_for, clock=lambda: NOW)


def audited(store) -> list:
    return list(reversed(store.automation.audit_log()))


def test_a_freeze_not_due_is_kept_and_left_frozen(store):
    store.freezes.save(frozen())
    hand = FakeHand()
    summary = review(store, hand)
    assert summary["kept"] == 1 and summary["active"] == 1
    assert hand.thawed == [] and hand.asked == [frozen().id]
    assert store.freezes.get(frozen().id).active
    assert audited(store) == []


def test_a_lift_requested_by_a_human_thaws_and_ends_it_in_their_name(store):
    store.freezes.save(frozen(lift_requested_by="user:alice", lift_reason="fixed forward"))
    hand = FakeHand(moved="never asked")
    summary = review(store, hand)
    assert summary["lifted"] == 1 and summary["active"] == 0
    assert hand.thawed == [frozen().id] and hand.asked == []  # a lift needs no owner check
    ended = store.freezes.get(frozen().id)
    assert (ended.end, ended.ended_by, ended.end_reason) == (
        "lifted",
        "user:alice",
        "fixed forward",
    )
    assert ended.ended_at == NOW and not ended.active
    [entry] = audited(store)
    assert (entry.actor, entry.action, entry.target, entry.reason) == (
        "user:alice",
        "lift_freeze",
        frozen().id,
        "fixed forward",
    )
    assert entry.details["rollback_id"] == "rollback-shop"


def test_an_expired_freeze_is_thawed_and_ended_by_backstop(store):
    store.freezes.save(frozen(expires_in=timedelta(seconds=-1)))
    hand = FakeHand()
    assert review(store, hand)["expired"] == 1
    ended = store.freezes.get(frozen().id)
    assert (ended.end, ended.ended_by) == ("expired", "backstop")
    assert "expired at" in ended.end_reason
    [entry] = audited(store)
    assert (entry.actor, entry.action) == ("backstop", "freeze_expired")


def test_a_source_moved_past_the_bad_revision_ends_it_with_the_hands_sentence(store):
    store.freezes.save(frozen())
    sentence = "the Application's source is at abc123, past revision 7"
    assert review(store, FakeHand(moved=sentence))["moved_past"] == 1
    ended = store.freezes.get(frozen().id)
    assert (ended.end, ended.end_reason) == ("moved_past", sentence)
    [entry] = audited(store)
    assert (entry.action, entry.reason, entry.target) == ("freeze_moved_past", sentence, ended.id)


def test_a_transient_thaw_error_keeps_it_active_until_the_next_review(store):
    store.freezes.save(frozen(expires_in=timedelta(seconds=-1)))
    hand = FakeHand(thaw_error=TransientError("503 from the API server"))
    summary = review(store, hand)
    assert summary["retrying"] == 1 and summary["active"] == 1
    assert store.freezes.get(frozen().id).active and audited(store) == []
    hand.thaw_error = None
    assert review(store, hand)["expired"] == 1
    assert not store.freezes.get(frozen().id).active


def test_a_permanent_thaw_error_ends_it_with_the_error_said(store):
    store.freezes.save(frozen(lift_requested_by="user:alice", lift_reason="done"))
    hand = FakeHand(thaw_error=NotFound("applications.argoproj.io shop not found"))
    assert review(store, hand)["lifted"] == 1
    ended = store.freezes.get(frozen().id)
    assert not ended.active
    assert (
        ended.end_reason == "done (thaw failed: NotFound: applications.argoproj.io shop not found)"
    )
    [entry] = audited(store)
    assert entry.details["thaw_error"].startswith("NotFound")


def test_not_knowing_whether_the_source_moved_keeps_the_freeze(store):
    store.freezes.save(frozen())
    summary = review(store, FakeHand(moved=TransientError("timed out")))  # type: ignore[arg-type]
    assert summary["kept"] == 1 and store.freezes.get(frozen().id).active


def test_one_bad_freeze_never_stops_the_review_of_the_others(store):
    for name in ("bad", "broken", "good"):
        store.freezes.save(frozen(name, expires_in=timedelta(seconds=-1)))
    hands = {
        "bad": FakeHand(thaw_error=RuntimeError("a bug in a hand")),
        "good": FakeHand(),
    }  # "broken": no hand at all, the lookup raises KeyError
    summary = review(store, hands)
    assert (summary["failed"], summary["expired"], summary["active"]) == (2, 1, 2)
    assert hands["good"].thawed == [frozen("good").id]
    assert {f.name for f in store.freezes.active()} == {"bad", "broken"}


def test_a_freeze_ended_meanwhile_is_not_ended_or_audited_twice(store):
    freeze = frozen()
    store.freezes.save(freeze)
    ending = freezes.Ending("expired", "backstop", "expired")
    assert freezes.end_freeze(store, freeze, ending, now=NOW) == "expired"
    assert freezes.end_freeze(store, freeze, ending, now=NOW) == "kept"
    assert len(audited(store)) == 1


def test_a_lift_request_never_writes_back_a_freeze_that_ended(store):
    store.freezes.save(frozen(end="expired", ended_at=NOW, ended_by="backstop"))

    def lift(f):
        f.lift_requested_by = "user:bob"

    found, changed = store.freezes.change_active(frozen().id, lift)
    assert not changed and found.end == "expired" and found.lift_requested_by == ""
    assert store.freezes.active() == []
    assert store.freezes.change_active("no-such-freeze", lift) == (None, False)


def test_next_review_is_on_the_intervals_grid_and_after_now():
    interval = timedelta(seconds=30)
    one = freezes.next_review(datetime(2026, 5, 4, 12, 0, 1, 500_000, tzinfo=UTC), interval)
    other = freezes.next_review(datetime(2026, 5, 4, 12, 0, 29, tzinfo=UTC), interval)
    assert one == other == datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)
    on_grid = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)
    assert freezes.next_review(on_grid, interval) == datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    assert freezes.next_review(on_grid, timedelta(milliseconds=10)) == on_grid + timedelta(
        seconds=1
    )


def test_reviews_asked_for_the_same_second_collapse_into_one_scheduled_job(redis_client):
    at = datetime.now(UTC) + timedelta(minutes=5)
    first = queues.schedule_freeze_review(redis_client, at=at)
    second = queues.schedule_freeze_review(redis_client, at=at + timedelta(microseconds=1))
    assert first == second
    registry = ScheduledJobRegistry(queue=queues.queue(redis_client, queues.DECISIONS))
    assert registry.get_job_ids() == [first]
    due = registry.get_scheduled_time(first)
    assert due > at and due - at <= timedelta(seconds=1) and due.microsecond == 0
    assert first == queues.freeze_review_job_id(due)


def test_an_immediate_review_is_due_within_a_second_and_never_under_a_past_id(redis_client):
    before = datetime.now(UTC)
    job_id = queues.schedule_freeze_review(redis_client)
    registry = ScheduledJobRegistry(queue=queues.queue(redis_client, queues.DECISIONS))
    due = registry.get_scheduled_time(job_id)
    assert before < due <= before + timedelta(seconds=1, microseconds=1)
    job = queues.queue(redis_client, queues.DECISIONS).fetch_job(job_id)
    assert job.func_name == "workers.jobs.review_freezes" and job.kwargs == {}


@pytest.fixture
def job_context(redis_client, monkeypatch):
    """The job's process context on the test Redis, and its hands the fake ones."""
    context = Context.build(Settings(redis_url="redis://unused"), Policy(), redis_client)
    monkeypatch.setattr(jobs, "process_context", lambda: context)
    hand = FakeHand()
    monkeypatch.setattr(jobs, "_hand_for", lambda _context: lambda _freeze: hand)
    return context


def scheduled(redis_client) -> list[str]:
    return ScheduledJobRegistry(queue=queues.queue(redis_client, queues.DECISIONS)).get_job_ids()


def test_the_job_schedules_its_next_review_while_freezes_remain(job_context, redis_client):
    job_context.store.freezes.save(frozen(now=datetime.now(UTC)))
    summary = jobs.review_freezes()
    assert summary["kept"] == 1
    [next_id] = scheduled(redis_client)
    due = datetime.fromtimestamp(int(next_id.rpartition("-")[2]), UTC)
    interval = job_context.policy.owners.review_interval
    assert timedelta(0) < due - datetime.now(UTC) <= interval + timedelta(seconds=1)


def test_the_job_schedules_nothing_once_no_freeze_remains(job_context, redis_client):
    assert jobs.review_freezes()["active"] == 0
    assert scheduled(redis_client) == []
    job_context.store.freezes.save(frozen(expires_in=timedelta(days=-1)))
    assert jobs.review_freezes()["expired"] == 1
    # Only the one scheduled before the work, when a freeze was still active.
    assert len(scheduled(redis_client)) == 1


def test_a_review_leaves_the_freezes_to_one_already_running(job_context, redis_client):
    job_context.store.freezes.save(frozen(expires_in=timedelta(days=-1)))
    redis_client.set(keys.FREEZE_REVIEW_LOCK, "another review", ex=60)
    assert jobs.review_freezes() == {"skipped": "another freeze review is running"}
    assert job_context.store.freezes.get(frozen().id).active
    assert len(scheduled(redis_client)) == 1  # the running one may have missed a change


def test_the_worker_accepts_a_scheduled_review(redis_client):
    from workers.allowlist import refusal

    job_id = queues.schedule_freeze_review(redis_client)
    assert refusal(redis_client.hgetall(f"rq:job:{job_id}")) is None
