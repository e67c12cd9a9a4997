"""Dedup semantics of the episode store's intake script (fakeredis with Lua; pure and fast).

The same script runs against a real redis-server in tests/integration.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from config.intake import IntakePolicy
from core.models import AlertEvent
from core.store import DUPLICATE, FIRST_RESOLVED, NEW_FIRING
from core.store.episodes import EpisodeStore
from core.store.keys import DECISION
from core.store.keys import EPISODE as EPISODE_PREFIX

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def event(fingerprint="fp1", status="firing", starts_at=T0, **labels) -> AlertEvent:
    return AlertEvent(
        source="alertmanager",
        fingerprint=fingerprint,
        status=status,
        labels={"alertname": "High5xx", **labels},
        annotations={},
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=5) if status == "resolved" else None,
    )


@pytest.fixture
def store():
    return EpisodeStore(fakeredis.FakeRedis(), IntakePolicy())


def record(store, *events, now=T0):
    return store.record_notifications(list(events), now=now)


def test_first_firing_is_new_and_repeats_are_duplicates(store):
    assert record(store, event()) == [NEW_FIRING]
    assert record(store, event()) == [DUPLICATE]  # repeat_interval
    assert record(store, event()) == [DUPLICATE]  # the HA peer's copy
    assert store.episode(event().episode_id).notifications == 3


def test_first_resolved_is_processed_once(store):
    record(store, event())
    assert record(store, event(status="resolved")) == [FIRST_RESOLVED]
    assert record(store, event(status="resolved")) == [DUPLICATE]
    episode = store.episode(event().episode_id)
    assert episode.status == "resolved"
    assert episode.ends_at == (T0 + timedelta(minutes=5)).isoformat()
    assert episode.resolved_at is not None


def test_a_late_firing_copy_does_not_reopen_a_resolved_episode(store):
    record(store, event(), event(status="resolved"))
    assert record(store, event()) == [DUPLICATE]
    assert store.episode(event().episode_id).status == "resolved"


def test_firing_again_later_is_a_new_episode(store):
    record(store, event(), event(status="resolved"))
    assert record(store, event(starts_at=T0 + timedelta(hours=1))) == [NEW_FIRING]


def test_resolved_without_a_firing_we_saw_is_processed_once(store):
    assert record(store, event(status="resolved")) == [FIRST_RESOLVED]
    assert record(store, event(status="resolved")) == [DUPLICATE]


def test_duplicates_inside_one_batch(store):
    assert record(store, event(), event(), event("fp2")) == [NEW_FIRING, DUPLICATE, NEW_FIRING]


def test_only_accepted_events_enter_the_stream(store):
    record(store, event(), event(), event(status="resolved"), event(status="resolved"))
    assert store.event_count() == 2


def test_episode_keys_expire(store):
    record(store, event())
    ttl = store.redis.ttl(EPISODE_PREFIX + event().episode_id)
    assert 0 < ttl <= IntakePolicy().episode_ttl.total_seconds()


def test_episode_count_is_bounded_oldest_first():
    store = EpisodeStore(fakeredis.FakeRedis(), IntakePolicy(max_episodes=100))
    for i in range(150):
        record(store, event(f"fp{i}"), now=T0 + timedelta(seconds=i))
    kept = store.recent_episodes(limit=1000)
    assert len(kept) == 100
    assert kept[0].event["fingerprint"] == "fp149"
    assert store.episode(event("fp0").episode_id) is None
    assert len(store.redis.keys(EPISODE_PREFIX + "*")) == 100


def test_stream_length_is_bounded():
    store = EpisodeStore(fakeredis.FakeRedis(), IntakePolicy(events_max_len=100))
    for i in range(500):
        record(store, event(f"fp{i}"))
    # MAXLEN ~ trims whole stream nodes, so allow one node of slack.
    assert store.event_count() <= 200


def test_recent_episodes_filters_by_status_and_limit(store):
    for i in range(5):
        record(store, event(f"f{i}"), now=T0 + timedelta(seconds=i))
    record(store, event("f1", status="resolved"), now=T0 + timedelta(seconds=10))
    assert [e.event["fingerprint"] for e in store.recent_episodes(limit=2)] == ["f1", "f4"]
    assert [e.event["fingerprint"] for e in store.recent_episodes(status="resolved")] == ["f1"]
    assert len(store.recent_episodes(status="firing", limit=10)) == 4


def test_events_keep_their_full_record(store):
    grafana = replace(event(), source="grafana", dashboard_url="https://g/d", values={"A": 2.5})
    record(store, grafana)
    stored = store.episode(grafana.episode_id)
    assert stored.source == "grafana"
    assert stored.event["dashboard_url"] == "https://g/d"
    assert stored.event["values"] == {"A": 2.5}


def test_repeats_known_to_this_process_keep_the_full_record(store):
    record(store, event())
    record(store, event())  # sent without its record: this process knows the episode
    stored = store.episode(event().episode_id)
    assert stored.notifications == 2
    assert stored.event["labels"]["alertname"] == "High5xx"


def test_a_stale_memory_of_an_episode_is_corrected_by_redis(store):
    record(store, event())
    store.redis.delete(EPISODE_PREFIX + event().episode_id)  # evicted behind our back
    assert record(store, event()) == [NEW_FIRING]
    assert store.episode(event().episode_id).event["fingerprint"] == "fp1"


def test_another_process_resolving_first_is_respected():
    shared = fakeredis.FakeRedis()
    worker_a, worker_b = EpisodeStore(shared, IntakePolicy()), EpisodeStore(shared, IntakePolicy())
    assert record(worker_a, event()) == [NEW_FIRING]
    assert record(worker_b, event(status="resolved")) == [FIRST_RESOLVED]
    assert record(worker_a, event(status="resolved")) == [DUPLICATE]
    assert record(worker_a, event()) == [DUPLICATE]


def test_an_entry_may_stand_for_several_notifications(store):
    assert store.record_notifications([event()], now=T0, counts=[3]) == [NEW_FIRING]
    store.record_notifications([event()], now=T0, counts=[2])
    assert store.episode(event().episode_id).notifications == 5


def test_repeats_written_behind_are_counted_or_handed_back(store):
    record(store, event(), event("fp2"), event("fp3"))
    record(store, event("fp2", status="resolved"))
    store.redis.delete(EPISODE_PREFIX + event("fp3").episode_id)  # gone meanwhile
    handed_back = store.add_repeats(
        [event(), event("fp2", status="resolved"), event("fp3"), event("fp1", status="resolved")],
        [4, 2, 1, 1],
        now=T0,
        token="flush-1",
    )
    # fp3 vanished and fp1 is firing, not resolved: neither is a plain repeat.
    assert handed_back == [2, 3]
    assert store.episode(event().episode_id).notifications == 5
    assert store.episode(event("fp2").episode_id).notifications == 4
    assert store.episode(event("fp3").episode_id) is None  # nothing written for it


def test_a_flush_sent_again_after_a_lost_answer_counts_once(store):
    record(store, event())
    for _ in range(2):  # the second time as after a dropped connection: same token
        assert store.add_repeats([event()], [3], now=T0, token="flush-2") == []
    assert store.episode(event().episode_id).notifications == 4
    store.add_repeats([event()], [3], now=T0, token="flush-3")  # another flush counts
    assert store.episode(event().episode_id).notifications == 7


def test_an_episode_is_settled_once_decided_or_resolved():
    shared = fakeredis.FakeRedis()
    worker_a, worker_b = EpisodeStore(shared, IntakePolicy()), EpisodeStore(shared, IntakePolicy())
    record(worker_a, event(), event("fp2"))
    assert not worker_a.is_settled_repeat(event())  # no decision recorded yet
    worker_a.mark_decided(event().episode_id)
    assert worker_a.is_settled_repeat(event())
    shared.set(DECISION + event().episode_id, "{}")  # what worker_a's decision wrote
    record(worker_b, event())  # worker_b learns it from the script's answer
    assert worker_b.is_settled_repeat(event())
    record(worker_b, event("fp2", status="resolved"))
    assert worker_b.is_settled_repeat(event("fp2")) and worker_b.is_settled_repeat(
        event("fp2", status="resolved")
    )
