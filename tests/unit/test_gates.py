"""A gate's verdict (core/gates.py) with the judgment (core/gatejudgment.py), on a real
Redis and a stand-in of Backstop's own Prometheus interface: the gate is unhealthy on
`confirmed`; `not_confirmed` sets the timing checks aside (shown, not counted);
`inconclusive`, `nodata`, `advise` and an unjudged revision leave the gate as it was."""

from datetime import UTC, datetime, timedelta

import pytest

from config.policy import Policy
from core.errors import TransientError
from core.gates import judge
from core.integrations.prometheus import Sample
from core.models import AlertEvent, Workload
from core.records import Rollout, WorkloadRecord
from core.store import Store
from tests.prometheus_standin import Prometheus

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ROLLED_OUT = NOW - timedelta(minutes=10)
CHECKOUT = Workload("default", "shop", "Deployment", "checkout")
ERRORS = 'sum(errors{namespace="$namespace",pod_template_hash="$hash"})'
KILL_SWITCH = "1 kill-switch alert(s) firing since revision 3 rolled out: CheckoutHigh5xx"
CONFIRMED = "the judgment confirms revision 3 is worse than revision 2 on errors"
VERIFY = {"name": "error_ratio", "query": "error_ratio", "comparison": "<", "threshold": 0.01}


def policy(*, mode="require", verify=False) -> Policy:
    judgment = {
        "mode": mode,
        "window": "5m",
        "step": "15s",
        "kpis": [{"name": "errors", "query": ERRORS, "min_samples": 8}],
    }
    defaults: dict = {"min_firing": "0s"}
    if verify:
        defaults["verify"] = {"queries": [VERIFY]}
    service = {"name": "checkout", "match": {"deployment": "checkout"}, "judgment": judgment}
    return Policy.model_validate({"mode": "enforce", "defaults": defaults, "services": [service]})


class Serving(Prometheus):
    """Both revisions' pods at these levels; the verify query at `verify_value`."""

    def __init__(self, levels, verify_value: float = 0.001):
        super().__init__(levels)
        self.verify_value = verify_value

    def query(self, *, expr, at=None):
        return [Sample({}, self.verify_value)]


def flat(value, since=None):
    return lambda t: value if since is None or t >= since else None


def rollout(revision: str, started_at: datetime, previous: str, pod_hash: str) -> Rollout:
    return Rollout(
        workload=WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name="checkout"
        ),
        revision=revision,
        previous_revision=previous,
        images=[f"shop/checkout:{revision}"],
        started_at=started_at,
        template_hash=pod_hash,
        sources=["watcher"] if pod_hash else ["ci"],
    )


class Gate:
    """Checkout's revision 3 (pods h3) rolled out 10 minutes ago over revision 2 (pods h2);
    calling it asks the gate now."""

    def __init__(self, redis_client):
        self.redis = redis_client
        self.store: Store | None = None

    def setup(self, *, hashes: bool = True, policy_: Policy | None = None) -> None:
        """Record both rollouts, with their pod hashes unless `hashes` is false (CI only)."""
        self.store = Store(self.redis, policy_ or policy())
        for revision, started, previous in (
            ("2", NOW - timedelta(hours=1), "1"),
            ("3", ROLLED_OUT, "2"),
        ):
            self.store.rollouts.record_observed(
                rollout(revision, started, previous, f"h{revision}" if hashes else ""),
                merge_window=timedelta(minutes=1),
            )

    def fire(self) -> None:
        """A kill switch about checkout, firing since 2 minutes ago."""
        assert self.store is not None
        event = AlertEvent(
            source="alertmanager",
            fingerprint="f1",
            status="firing",
            labels={
                "alertname": "CheckoutHigh5xx",
                "namespace": "shop",
                "deployment": "checkout",
                "backstop_rollback": "true",
            },
            annotations={},
            starts_at=NOW - timedelta(minutes=2),
        )
        self.store.episodes.record_notifications([event], now=NOW)

    def __call__(self, prometheus, policy_: Policy | None = None) -> dict:
        if self.store is None:
            self.setup(policy_=policy_)
        assert self.store is not None
        return judge(self.store, policy_ or policy(), prometheus, CHECKOUT, NOW).to_json()


@pytest.fixture
def gate(redis_client) -> Gate:
    return Gate(redis_client)


def test_a_revision_confirmed_worse_makes_the_gate_unhealthy(gate):
    prometheus = Serving({"h3": flat(0.05), "h2": flat(0.002)})
    body = gate(prometheus)
    assert body["healthy"] is False
    assert body["reasons"] == [CONFIRMED]
    judgment = body["checks"]["judgment"]
    assert judgment["verdict"] == "confirmed" and judgment["against"] == "2"
    assert judgment["effect"] == f"the gate is unhealthy: {CONFIRMED}"
    (kpi,) = judgment["kpis"]
    assert kpi["how"] == "side_by_side" and "series" not in kpi
    # The revisions' own pods, over the last window since the rollout.
    exprs = {expr for expr, _, _ in prometheus.asked}
    assert exprs == {
        'sum(errors{namespace="shop",pod_template_hash="h3"})',
        'sum(errors{namespace="shop",pod_template_hash="h2"})',
    }
    assert {end for _, _, end in prometheus.asked} == {NOW}


def test_a_firing_kill_switch_the_revision_did_not_cause_leaves_the_gate_healthy(gate):
    gate.setup()
    gate.fire()
    body = gate(Serving({"h3": flat(0.2), "h2": flat(0.2)}))  # old and new pods fail alike
    assert body["healthy"] is True
    assert body["checks"]["judgment"]["verdict"] == "not_confirmed"
    assert body["checks"]["not_blamed_on_this_revision"] == [KILL_SWITCH]
    # Still shown where it always is, and the answer says why it does not count.
    assert [f["alertname"] for f in body["checks"]["kill_switches_firing"]] == ["CheckoutHigh5xx"]
    (reason,) = body["reasons"]
    assert reason.startswith("revision 3 is no worse than revision 2 on its judgment KPIs")
    assert "the cause is elsewhere" in reason
    assert reason == body["checks"]["judgment"]["effect"]


def test_a_failing_verify_query_is_set_aside_too_when_not_confirmed(gate):
    strict = policy(verify=True)
    gate.setup(policy_=strict)
    body = gate(Serving({"h3": flat(0.2), "h2": flat(0.2)}, verify_value=0.3), strict)
    assert body["healthy"] is True
    assert body["checks"]["not_blamed_on_this_revision"] == [
        "verify query error_ratio breaks its threshold: [0.3] < 0.01 is false"
    ]
    assert body["checks"]["verify"]["queries"]["error_ratio"]["held"] is False


def test_a_revision_being_rolled_back_stays_unhealthy_whatever_the_judgment(gate):
    gate.setup()
    gate.fire()
    claimed = gate.store.automation.claim_rollback(
        workload=CHECKOUT,
        revision="3",
        decision_id="d-1",
        now=NOW,
        cooldown=timedelta(0),
        max_rollbacks=10,
        window=timedelta(hours=1),
    )
    assert claimed is None
    body = gate(Serving({"h3": flat(0.2), "h2": flat(0.2)}))
    assert body["checks"]["judgment"]["verdict"] == "not_confirmed"
    assert body["healthy"] is False
    assert body["reasons"] == ["Backstop is rolling revision 3 back (decision d-1)"]
    assert body["checks"]["not_blamed_on_this_revision"] == [KILL_SWITCH]


def test_an_inconclusive_judgment_leaves_the_timing_checks_in_force(gate):
    gate.setup()
    gate.fire()
    # Revision 3's pods have served for a minute only: too few points to judge.
    body = gate(Serving({"h3": flat(0.05, since=NOW - timedelta(minutes=1)), "h2": flat(0.002)}))
    assert body["checks"]["judgment"]["verdict"] in ("inconclusive", "nodata")
    assert body["healthy"] is False and body["reasons"] == [KILL_SWITCH]
    assert body["checks"]["not_blamed_on_this_revision"] == []
    assert body["checks"]["judgment"]["effect"] == "none: the timing checks count as they are"


def test_prometheus_failing_during_the_judgment_is_no_data_not_an_error(gate):
    class Away(Serving):
        def query_range(self, **query):
            raise TransientError("connection refused")

    gate.setup()
    gate.fire()
    body = gate(Away({}))
    assert body["checks"]["judgment"]["verdict"] == "nodata"
    assert body["reasons"] == [KILL_SWITCH]


def test_without_recorded_hashes_the_gate_is_as_without_judgment(gate):
    gate.setup(hashes=False)
    gate.fire()
    prometheus = Serving({"h3": flat(0.2), "h2": flat(0.2)})
    body = gate(prometheus)
    assert prometheus.asked == []
    assert body["healthy"] is False and body["reasons"] == [KILL_SWITCH]
    judgment = body["checks"]["judgment"]
    assert judgment["verdict"] is None and judgment["mode"] == "none"
    assert "hashes of this revision and the one before it are not recorded" in judgment["detail"]
    assert body["checks"]["not_blamed_on_this_revision"] == []


def test_without_judgment_kpis_or_prometheus_the_gate_says_why_it_did_not_judge(gate):
    plain = Policy.model_validate({"mode": "enforce", "defaults": {"min_firing": "0s"}})
    gate.setup(policy_=plain)
    gate.fire()
    body = gate(Serving({}), plain)
    assert body["reasons"] == [KILL_SWITCH]
    assert body["checks"]["judgment"]["detail"] == "the service has no judgment KPIs"
    off = policy(mode="off")
    assert gate(Serving({}), off)["checks"]["judgment"]["detail"] == (
        "the service's judgment is off"
    )
    unset = gate(None)
    assert unset["checks"]["judgment"]["detail"] == "PROMETHEUS_URL is not set"
    assert unset["reasons"] == [KILL_SWITCH]


def test_in_advise_mode_the_judgment_is_recorded_only(gate):
    advise = policy(mode="advise")
    gate.setup(policy_=advise)
    confirmed = gate(Serving({"h3": flat(0.05), "h2": flat(0.002)}), advise)
    assert confirmed["checks"]["judgment"]["verdict"] == "confirmed"
    assert confirmed["healthy"] is True
    gate.fire()
    excused = gate(Serving({"h3": flat(0.2), "h2": flat(0.2)}), advise)
    assert excused["checks"]["judgment"]["verdict"] == "not_confirmed"
    assert excused["healthy"] is False and excused["reasons"] == [KILL_SWITCH]
    assert excused["checks"]["judgment"]["effect"].startswith("advise: recorded only")
