"""Every decision outcome and skip reason, table-driven, on a real Redis."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from config.policy import Policy
from core import queues
from core.decisions import DecisionError, Engine
from core.models import AlertEvent, Workload
from core.records import Rollout, WorkloadRecord
from core.store import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CHECKOUT = Workload("default", "shop", "Deployment", "checkout")
KILL = {
    "alertname": "CheckoutHigh5xx",
    "namespace": "shop",
    "deployment": "checkout",
    "backstop_rollback": "true",
}


class Clock:
    """A settable clock for the engine."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def make_engine(redis_client, clock):
    def build(**policy) -> Engine:
        config = Policy.model_validate({"mode": "enforce", **policy})
        return Engine(
            store=Store(redis_client, config), policy=config, connection=redis_client, clock=clock
        )

    return build


@pytest.fixture
def engine(make_engine):
    return make_engine()


def deploy(engine: Engine, revision: str, minutes_ago: float, workload=CHECKOUT, **fields):
    rollout = Rollout(
        workload=WorkloadRecord.of(workload),
        revision=revision,
        previous_revision=str(int(revision) - 1),
        started_at=NOW - timedelta(minutes=minutes_ago),
        sources=["watcher"],
        **fields,
    )
    engine.store.rollouts.record_observed(rollout, merge_window=timedelta(minutes=10))
    return rollout


def fire(engine: Engine, episode="ep1", labels=None, started_minutes_ago=5.0):
    """Record a firing episode as intake would, then decide about it."""
    labels = labels or KILL
    starts_at = NOW - timedelta(minutes=started_minutes_ago)
    event = AlertEvent(
        source="alertmanager",
        fingerprint=episode,
        status="firing",
        labels=labels,
        annotations={},
        starts_at=starts_at,
    )
    engine.store.episodes.record_notifications([event], now=NOW)
    return engine.on_firing(episode_id=event.episode_id, labels=labels, starts_at=starts_at)


def test_rollback_is_enqueued_once_with_a_deterministic_job(engine, redis_client):
    deploy(engine, "3", minutes_ago=12)
    decision = fire(engine)
    assert (decision.outcome, decision.reason) == ("rollback", "enqueued")
    assert decision.job_id == queues.rollback_job_id(CHECKOUT, "3")
    assert decision.rollout.revision == "3" and decision.confidence == "high"
    job = queues.queue(redis_client, queues.ROLLBACKS).fetch_job(decision.job_id)
    assert job.kwargs == {
        "decision_id": decision.id,
        "workload": CHECKOUT.key,
        "bad_revision": "3",
        "mode": "enforce",
    }
    assert engine.store.decisions.get(decision.id).outcome == "rollback"
    # A second alert about the same bad revision does not roll back twice.
    other = fire(engine, episode="ep2", labels={**KILL, "alertname": "CheckoutLatency"})
    assert (other.outcome, other.reason) == ("skipped", "already_rolled_back")


@pytest.mark.parametrize(
    ("setup", "labels", "reason"),
    [
        (lambda e: deploy(e, "3", 12), {**KILL, "backstop_rollback": "false"}, "not_kill_switch"),
        (lambda e: None, {"alertname": "X", "backstop_rollback": "true"}, "no_workload"),
        (lambda e: None, KILL, "no_recent_deployment"),
        (lambda e: deploy(e, "3", 45), KILL, "no_recent_deployment"),  # outside lookback
        (lambda e: deploy(e, "3", 2), KILL, "predates_deployment"),  # alert began 5m ago
        (lambda e: (deploy(e, "2", 20), deploy(e, "3", 10)), KILL, "ambiguous"),
        (
            lambda e: deploy(e, "4", 10, by_backstop=True, rollback_of="3"),
            KILL,
            "rollback_of_rollback",
        ),
        (
            lambda e: (deploy(e, "3", 20), deploy(e, "4", 10, by_backstop=True, rollback_of="3")),
            KILL,
            "rollback_of_rollback",
        ),
        (
            lambda e: (
                deploy(e, "3", 12),
                e.store.automation.pause(
                    workload=None, actor="alice", reason="maintenance", now=NOW
                ),
            ),
            KILL,
            "paused",
        ),
        (
            lambda e: (
                deploy(e, "3", 12),
                e.store.automation.pause(
                    workload=CHECKOUT, actor="alice", reason="debugging", now=NOW
                ),
            ),
            KILL,
            "paused",
        ),
    ],
)
def test_skip_reasons(engine, setup, labels, reason):
    setup(engine)
    decision = fire(engine, labels=labels)
    assert (decision.outcome, decision.reason) == ("skipped", reason)
    assert decision.detail and decision.history[-1].reason == reason
    assert engine.store.decisions.get(decision.id).reason == reason


def test_alert_within_clock_skew_before_the_rollout_matches_with_medium_confidence(engine):
    deploy(engine, "3", minutes_ago=4.5)  # the alert started 5m ago: 30s before the rollout
    decision = fire(engine)
    assert decision.outcome == "rollback" and decision.confidence == "medium"


def test_service_matchers_make_a_kill_switch(make_engine):
    engine = make_engine(
        services=[
            {
                "name": "checkout",
                "match": {"namespace": "shop"},
                "kill_switches": [{"alertname": "CheckoutHigh5xx"}],
            }
        ]
    )
    deploy(engine, "3", 12)
    labels = {k: v for k, v in KILL.items() if k != "backstop_rollback"}
    assert fire(engine, labels=labels).outcome == "rollback"
    assert fire(engine, "ep2", {**labels, "alertname": "DiskFull"}).reason == "not_kill_switch"


def test_service_workload_overrides_labels(make_engine):
    other = Workload("default", "payments", "StatefulSet", "ledger")
    engine = make_engine(
        services=[
            {
                "name": "ledger",
                "match": {"team": "payments"},
                "workload": {"kind": "StatefulSet", "name": "ledger", "namespace": "payments"},
            }
        ]
    )
    deploy(engine, "7", 12, workload=other)
    decision = fire(
        engine,
        labels={"alertname": "LedgerErrors", "team": "payments", "backstop_rollback": "true"},
    )
    assert decision.workload.workload() == other and decision.outcome == "rollback"


def test_young_episodes_are_deferred_and_rechecked(engine, redis_client, clock):
    deploy(engine, "3", 12)
    decision = fire(engine, started_minutes_ago=0.5)
    assert (decision.outcome, decision.reason) == ("deferred", "min_firing")
    assert decision.recheck_at == NOW - timedelta(minutes=0.5) + timedelta(minutes=2)
    registry = ScheduledJobRegistry(queue=queues.queue(redis_client, queues.DECISIONS))
    assert queues.recheck_job_id(decision.id) in registry.get_job_ids()
    clock.now = NOW + timedelta(minutes=2)
    rechecked = engine.recheck(decision.id)
    assert rechecked.outcome == "rollback"
    assert [step.outcome for step in rechecked.history] == ["deferred", "rollback"]


def test_a_deferred_episode_that_resolved_is_not_rolled_back(engine, clock):
    deploy(engine, "3", 12)
    deferred = fire(engine, started_minutes_ago=0.5)
    resolved = engine.on_resolved(
        episode_id=deferred.id, labels=KILL, starts_at=NOW - timedelta(minutes=0.5)
    )
    assert (resolved.outcome, resolved.reason) == ("skipped", "resolved")
    clock.now = NOW + timedelta(minutes=2)
    assert engine.recheck(deferred.id).reason == "resolved"  # the re-check changes nothing


def test_resolved_without_a_prior_decision_is_recorded(engine):
    decision = engine.on_resolved(episode_id="late", labels=KILL, starts_at=NOW)
    assert (decision.outcome, decision.reason) == ("skipped", "resolved")


def test_min_firing_can_be_overridden_per_service(make_engine):
    engine = make_engine(
        services=[{"name": "c", "match": {"namespace": "shop"}, "min_firing": "10s"}]
    )
    deploy(engine, "3", 12)
    assert fire(engine, started_minutes_ago=0.5).outcome == "rollback"


def test_cooldown_after_a_rollback(engine):
    deploy(engine, "3", 25)
    assert fire(engine, started_minutes_ago=20).outcome == "rollback"
    deploy(engine, "4", 19, by_backstop=True, rollback_of="3")  # Backstop's revert
    deploy(engine, "5", 12)  # then a new release, which breaks too
    decision = fire(engine, "ep2")
    assert decision.rollout.revision == "5"
    assert (decision.outcome, decision.reason) == ("skipped", "cooldown")


def test_circuit_breaker_trips_and_needs_a_human(make_engine):
    engine = make_engine(
        defaults={"cooldown": "0s"}, circuit_breaker={"max_rollbacks": 2, "window": "1h"}
    )
    outcomes = []
    for index in range(4):
        workload = Workload("default", "shop", "Deployment", f"svc{index}")
        deploy(engine, "3", 12, workload=workload)
        labels = {**KILL, "deployment": f"svc{index}"}
        outcomes.append(fire(engine, f"ep{index}", labels).reason)
    assert outcomes == ["enqueued", "enqueued", "circuit_open", "circuit_open"]
    state = engine.store.automation.circuit(now=NOW, window=timedelta(hours=1))
    assert state["state"] == "open"
    engine.store.automation.reset_circuit(actor="alice", now=NOW)
    assert fire(engine, "ep9", {**KILL, "deployment": "svc3"}).outcome == "rollback"


def test_dry_run_records_what_it_would_do(make_engine, redis_client):
    engine = make_engine(mode="dry-run")
    deploy(engine, "3", 12)
    decision = fire(engine)
    assert (decision.outcome, decision.reason) == ("dry_run", "would_roll_back")
    assert "would roll back default/shop/Deployment/checkout from revision 3" in decision.detail
    # A dry-run job computes the exact patch; it claims nothing, so a real rollback may follow.
    [job_id] = queues.queue(redis_client, queues.ROLLBACKS).job_ids
    assert job_id == decision.job_id == queues.rollback_job_id(CHECKOUT, "3", mode="dry-run")
    assert engine.store.automation.claimed(CHECKOUT, "3") is None


def test_approve_and_deny(make_engine, redis_client):
    engine = make_engine(mode="approve")
    deploy(engine, "3", 12)
    waiting = fire(engine)
    assert waiting.outcome == "awaiting_approval"
    awaiting = engine.store.decisions.recent(outcome="awaiting_approval")
    assert [d.id for d in awaiting] == [waiting.id]
    approved = engine.approve(waiting.id, actor="alice", reason="checkout is down")
    assert approved.outcome == "rollback" and approved.history[-1].by == "alice"
    assert approved.history[-1].note == "checkout is down"  # the reason, kept with the step
    assert queues.queue(redis_client, queues.ROLLBACKS).count == 1
    with pytest.raises(DecisionError):
        engine.approve(waiting.id, actor="alice")
    deploy(engine, "3", 12, workload=Workload("default", "shop", "Deployment", "cart"))
    other = fire(engine, "ep2", {**KILL, "deployment": "cart"})
    denied = engine.deny(other.id, actor="bob", reason="false alarm")
    assert (denied.outcome, denied.reason) == ("skipped", "denied")
    assert (denied.history[-1].by, denied.history[-1].note) == ("bob", "false alarm")
    audit = engine.store.automation.audit_log()
    assert [(a.actor, a.action) for a in audit] == [("bob", "deny"), ("alice", "approve")]
    assert engine.store.decisions.recent(outcome="awaiting_approval") == []


def test_concurrent_alerts_for_one_bad_revision_enqueue_one_job(make_engine, redis_client):
    engines = [make_engine() for _ in range(8)]  # eight receivers, one Redis
    deploy(engines[0], "3", 12)

    def decide(index):
        return fire(engines[index % 8], f"ep{index}", {**KILL, "alertname": f"A{index}"}).outcome

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(decide, range(64)))
    assert outcomes.count("rollback") == 1
    assert queues.queue(redis_client, queues.ROLLBACKS).count == 1


def test_no_cooldown_means_none_when_the_last_claim_is_stamped_later(make_engine):
    """Receivers' clocks differ by a little: a rollback claimed by one whose clock reads
    later is not "recent" to a workload without a cooldown."""
    engine = make_engine(defaults={"cooldown": "0s"})
    automation = engine.store.automation
    later = NOW + timedelta(milliseconds=5)
    assert (
        automation.claim_rollback(
            workload=CHECKOUT,
            revision="2",
            decision_id="other",
            now=later,
            cooldown=timedelta(0),
            max_rollbacks=100,
            window=timedelta(hours=1),
        )
        is None
    )
    assert automation.cooldown_left(CHECKOUT, now=NOW, cooldown=timedelta(0)) == timedelta(0)
    deploy(engine, "3", 12)
    decision = fire(engine)  # revision 3, claimed at NOW, before the other claim's stamp
    assert (decision.outcome, decision.reason) == ("rollback", "enqueued")


def test_a_claim_made_meanwhile_is_the_reason_not_the_cooldown_it_set(engine, monkeypatch):
    """R1's race: a second receiver read "not claimed", then the first claimed the rollback
    (setting the workload's cooldown), then the second read the cooldown."""
    deploy(engine, "3", 12)
    automation = engine.store.automation
    real = automation.claimed
    reads = []

    def claimed_meanwhile(workload, revision):
        reads.append(revision)
        if len(reads) == 1:  # the first read, just before the other receiver's claim
            assert (
                automation.claim_rollback(
                    workload=workload,
                    revision=revision,
                    decision_id="other",
                    now=NOW,
                    cooldown=timedelta(minutes=10),
                    max_rollbacks=100,
                    window=timedelta(hours=1),
                )
                is None
            )
            return None
        return real(workload, revision)

    monkeypatch.setattr(automation, "claimed", claimed_meanwhile)
    decision = fire(engine)
    assert (decision.outcome, decision.reason) == ("skipped", "already_rolled_back")
