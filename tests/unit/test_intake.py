"""The intake pipeline's write-behind of settled repeats (fakeredis with Lua; pure and fast).

The same scripts run against a real redis-server in tests/integration.
"""

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from config.policy import Policy
from core.decisions import Engine
from core.intake import Intake, ingest
from core.models import AlertEvent
from core.store import Store
from core.store.keys import DECISION
from core.store.keys import EPISODE as EPISODE_PREFIX
from tests.conftest import wait_for

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def event(fingerprint="fp1", status="firing") -> AlertEvent:
    return AlertEvent(
        source="alertmanager",
        fingerprint=fingerprint,
        status=status,
        labels={"alertname": "High5xx", "namespace": "shop"},
        annotations={},
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=5) if status == "resolved" else None,
    )


def engine_on(server: fakeredis.FakeServer) -> Engine:
    """One receiver process: its own client, store memory and engine, on a shared server."""
    client = fakeredis.FakeRedis(server=server)
    policy = Policy()
    return Engine(store=Store(client, policy), policy=policy, connection=client, clock=lambda: T0)


@pytest.fixture
def server():
    return fakeredis.FakeServer()


@pytest.fixture
def intake(server):
    found = Intake(engine_on(server), interval=3600)  # flushed by the tests, not a timer
    yield found
    found._closed = True  # nothing left for the exit hook to flush into a dead fake


def notifications(intake: Intake, fingerprint="fp1") -> int:
    return intake.engine.store.episodes.episode(event(fingerprint).episode_id).notifications


def test_a_decided_episodes_repeats_are_held_then_counted(intake):
    first = intake.ingest([event()])
    assert (first.accepted, len(first.decisions)) == (1, 1)
    again = intake.ingest([event(), event()])
    assert (again.accepted, again.duplicates, again.decisions) == (0, 2, [])
    assert intake.pending() == 2 and notifications(intake) == 1  # not written yet
    assert intake.flush()
    assert intake.pending() == 0 and notifications(intake) == 3


def test_without_write_behind_every_repeat_is_recorded_at_once(server):
    """As with BACKSTOP_REDIS_MIN_REPLICAS: the webhook's writes must be replicated."""
    strict = Intake(engine_on(server), interval=3600, write_behind=False)
    strict.ingest([event()])
    assert strict.ingest([event(), event()]).duplicates == 2
    assert strict.pending() == 0 and notifications(strict) == 3


def test_an_undecided_episodes_repeats_are_recorded_at_once(intake):
    # Recorded by a receiver that has not (yet) recorded its decision.
    intake.engine.store.episodes.record_notifications([event()], now=T0)
    assert intake.ingest([event()]).duplicates == 1
    assert intake.pending() == 0 and notifications(intake) == 2


def test_repeats_of_an_episode_decided_elsewhere_are_held_after_one_round_trip(server, intake):
    decider = engine_on(server)
    ingest(decider, [event()])
    assert intake.ingest([event()]).duplicates == 1  # learns that the episode is settled
    assert intake.pending() == 0 and notifications(intake) == 2
    intake.ingest([event()])
    assert intake.pending() == 1


def test_a_resolution_is_never_held(intake):
    intake.ingest([event()])
    resolved = intake.ingest([event(status="resolved")])
    assert (resolved.accepted, resolved.duplicates) == (1, 0)  # processed, not held
    assert intake.pending() == 0
    late = intake.ingest([event(), event(status="resolved")])  # now both plain repeats
    assert late.duplicates == 2 and intake.pending() == 2
    assert intake.flush() and notifications(intake) == 4


def test_a_vanished_episode_is_recorded_and_decided_again_at_flush(intake):
    intake.ingest([event()])
    intake.ingest([event()])
    episode_id = event().episode_id
    redis = intake.engine.store.redis
    redis.delete(EPISODE_PREFIX + episode_id, DECISION + episode_id)  # lost in a failover
    assert intake.flush()
    assert notifications(intake) == 1  # recorded again, as the held repeat
    assert redis.exists(DECISION + episode_id)  # and decided again


def test_an_episode_resolved_elsewhere_takes_the_resolution_from_a_held_repeat(server, intake):
    intake.ingest([event(), event("fp2")])
    intake.ingest([event("fp2", status="resolved")])  # fp2 is now known resolved...
    other = engine_on(server)
    ingest(other, [event("fp2")])  # (a late firing copy changes nothing)
    intake.ingest([event("fp2", status="resolved")])
    assert intake.pending() == 1
    assert intake.flush()
    assert intake.engine.store.episodes.episode(event("fp2").episode_id).status == "resolved"


def test_redis_down_keeps_the_counts_and_turns_write_behind_off(server, intake):
    intake.ingest([event()])
    intake.ingest([event()])
    server.connected = False
    assert not intake.flush()
    assert intake.pending() == 1  # kept, not lost
    with pytest.raises(RedisConnectionError):  # synchronous again: the webhook gets 503
        intake.ingest([event()])
    assert intake.pending() == 1  # the rejected webhook holds nothing (its retry counts)
    server.connected = True
    assert intake.flush()
    assert notifications(intake) == 2
    intake.ingest([event()])
    assert intake.pending() == 1  # write-behind is back on


def test_a_failed_synchronous_part_holds_nothing_of_the_webhook(server, intake):
    intake.ingest([event()])
    server.connected = False
    with pytest.raises(RedisConnectionError):
        intake.ingest([event(), event("new")])  # the repeat could be held; "new" cannot
    assert intake.pending() == 0


def test_a_webhooks_decisions_are_written_in_one_transaction(intake):
    decisions = intake.engine.store.decisions
    writes = []
    original = decisions._write
    decisions._write = lambda rows: (writes.append([row.id for row in rows]), original(rows))
    result = intake.ingest([event("a"), event("b"), event("c")])
    assert result.accepted == 3 and len(writes) == 1 and len(writes[0]) == 3
    ids = [event(fingerprint).episode_id for fingerprint in "abc"]
    assert set(decisions.get_many(ids)) == set(ids) == set(writes[0])


def test_decisions_whose_write_failed_leave_their_episodes_unsettled(intake):
    decisions = intake.engine.store.decisions

    def down(rows):
        raise RedisConnectionError("Redis went away before the decisions were written")

    decisions._write = down
    with pytest.raises(RedisConnectionError):
        intake.ingest([event()])
    # Not taken for settled: its next repeat is recorded at once (and decided, once the
    # claim to decide it lapses), not held behind as a repeat of a decided episode.
    assert not intake.engine.store.episodes.is_settled_repeat(event())
    del decisions._write
    assert intake.ingest([event()]).duplicates == 1 and intake.pending() == 0


def test_close_records_what_is_held_and_holds_nothing_more(intake):
    intake.ingest([event()])
    intake.ingest([event()])
    intake.close()
    assert intake.pending() == 0 and notifications(intake) == 2
    intake.ingest([event()])
    assert intake.pending() == 0 and notifications(intake) == 3


def test_the_flusher_thread_records_within_its_interval(server):
    quick = Intake(engine_on(server), interval=0.05)
    quick.ingest([event()])
    quick.ingest([event()])
    wait_for(lambda: quick.pending() == 0, message="the flusher's first round")
    assert notifications(quick) == 2
