"""The judgment's scenarios on the real control plane, with data that look like a real
service's: the demo service draws its traffic with seeded noise (Poisson requests, binomial
failures, jittered durations), a real Prometheus scrapes it per revision, and the rollback
job (or, with several candidates, the candidates' job) judges before anything reverts.

- two rollouts inside the lookback, the second one bad: that one is rolled back;
- a latency regression only in the slowest requests: confirmed on p99, not on p50;
- one client platform broken: confirmed on that segment's KPI, although the overall error
  ratio stays within its allowance;
- a StatefulSet canary (a partition): judged side by side, confirmed, rolled back;
- too little traffic to judge: no data, so a human approves.
"""

import time

import pytest
from kubernetes import client

from core.decisions import Engine
from core.models import Workload
from core.records import utcnow
from gameday.demo import SERVICE_LABEL, DemoProcess
from testbed.prometheus import PrometheusServer
from tests.conftest import wait_for
from tests.integration.test_judgment import ERRORS, SETTLE, deploy, judge
from tests.workloads import FAST
from workers.candidates import CandidateJudge

pytestmark = pytest.mark.integration

SEED = 20261205


def quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) (rate(demo_request_duration_seconds_bucket"
        '{deployment="$name",pod_template_hash="$hash"}[6s])))'
    )


IOS_ERRORS = ERRORS.replace('pod_template_hash="$hash"', 'pod_template_hash="$hash",segment="ios"')


def policy(*kpis: dict, name: str = "checkout") -> dict:
    judgment = {"window": "40s", "step": "2s", "kpis": list(kpis)}
    service = {"name": name, "match": {"alertname": "High5xx"}, "judgment": judgment}
    return {**FAST, "services": [service]}


def kpi(name: str, query: str, **limits) -> dict:
    return {"name": name, "query": query, "min_samples": 8, **limits}


@pytest.fixture
def scene(kube, kube_namespace, tmp_path, make_stack):
    """Start the demo service (noisy; options per test) and a Prometheus scraping it;
    returns a function building the stack for a policy."""
    started = []

    def start(policy_body: dict, **demo_options):
        demo = DemoProcess(
            kube.kubeconfig, kube_namespace, tmp_path / "demo", noise=SEED, **demo_options
        ).start()
        started.append(demo)
        prometheus = PrometheusServer(tmp_path / "prometheus", [demo.address]).start()
        started.append(prometheus)
        return make_stack(policy_body), demo, prometheus

    yield start
    for process in reversed(started):
        process.stop()


def test_of_two_rollouts_inside_the_lookback_the_bad_one_is_rolled_back(scene):
    stack, _, prometheus = scene(policy(kpi("5xx ratio", ERRORS)))
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE / 2)
    deploy(stack, "demo/checkout:1.0.1")  # a harmless change
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-errors")
    time.sleep(SETTLE)
    decision = stack.alert(workload)
    assert (decision.outcome, decision.reason) == ("deferred", "judging_candidates")

    candidates = CandidateJudge(
        store=stack.store,
        policy=stack.policy,
        engine=Engine(stack.store, stack.policy, stack.redis, utcnow),
        prometheus=prometheus.client,
        kube_for=lambda cluster: stack.kube,
        clock=utcnow,
    )
    candidates.run(decision.id)
    decision = stack.store.decisions.get(decision.id)
    judged = decision.candidates["revisions"]
    assert judged["3"]["verdict"] == "confirmed", judged
    assert judged["2"]["verdict"] != "confirmed", judged
    assert (decision.outcome, decision.rollout.revision) == ("rollback", "3")

    rollback = stack.roll_back(decision, stack.executor(prometheus=prometheus.client))
    assert rollback.judgment["verdict"] == "confirmed"
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert stack.image("checkout") == "demo/checkout:1.0.1"


def test_a_regression_only_in_the_slowest_requests_is_confirmed_on_p99(scene):
    kpis = [kpi("5xx ratio", ERRORS), kpi("p50", quantile(0.5)), kpi("p99", quantile(0.99))]
    stack, _, prometheus = scene(policy(*kpis))
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-slow")  # 10 % of requests take 2.5 s
    time.sleep(SETTLE)
    _decision, rollback = judge(stack, prometheus, workload)
    verdicts = {k["name"]: k for k in rollback.judgment["kpis"]}
    assert verdicts["p99"]["verdict"] == "confirmed", verdicts["p99"]
    assert verdicts["p99"]["median_new"] > 1.0 > 0.1 > verdicts["p99"]["median_old"]
    assert verdicts["p50"]["verdict"] != "confirmed", verdicts["p50"]
    assert verdicts["5xx ratio"]["verdict"] != "confirmed", verdicts["5xx ratio"]
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert stack.image("checkout") == "demo/checkout:1.0.0"


def test_one_broken_client_platform_is_confirmed_on_its_segment(scene):
    # iOS is 5 % of the traffic: its 5 % failures add 0.25 points to the overall ratio,
    # within the overall KPI's allowance of 0.5 points.
    kpis = [
        kpi("5xx ratio", ERRORS, relative=None, absolute=0.005),
        kpi("iOS 5xx ratio", IOS_ERRORS, relative=None, absolute=0.005),
    ]
    stack, _, prometheus = scene(
        policy(*kpis), rate=400.0, segments={"ios": 0.05, "android": 0.35, "web": 0.6}
    )
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-errors-ios")
    time.sleep(SETTLE)
    _decision, rollback = judge(stack, prometheus, workload)
    verdicts = {k["name"]: k for k in rollback.judgment["kpis"]}
    assert verdicts["iOS 5xx ratio"]["verdict"] == "confirmed", verdicts["iOS 5xx ratio"]
    assert verdicts["5xx ratio"]["verdict"] == "not_confirmed", verdicts["5xx ratio"]
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)


def statefulset_canary(stack, image: str, partition: int) -> None:
    """`ledger`, 3 replicas; only ordinals >= `partition` take a new template."""
    labels = {"app": "ledger", SERVICE_LABEL: "ledger"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
    spec = {"template": template, "updateStrategy": strategy}
    try:
        stack.apps.patch_namespaced_stateful_set("ledger", stack.namespace, {"spec": spec})
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        spec.update(
            {"replicas": 3, "serviceName": "ledger", "selector": {"matchLabels": {"app": "ledger"}}}
        )
        body = {"metadata": {"name": "ledger"}, "spec": spec}
        stack.apps.create_namespaced_stateful_set(stack.namespace, body)

    def settled() -> bool:
        status = stack.apps.read_namespaced_stateful_set("ledger", stack.namespace).status
        return (status.ready_replicas or 0) == 3 and status.updated_replicas == 3 - partition

    wait_for(settled, timeout=60, message=f"ledger on {image}")
    stack.record_history("StatefulSet")


def test_a_statefulset_canary_is_judged_side_by_side_and_rolled_back(scene):
    stack, _, prometheus = scene(policy(kpi("5xx ratio", ERRORS), name="ledger"))
    statefulset_canary(stack, "demo/ledger:1.0.0", partition=0)
    time.sleep(SETTLE / 2)
    statefulset_canary(stack, "demo/ledger:1.1.0-errors", partition=2)  # one pod of three
    time.sleep(SETTLE)
    workload = Workload("default", stack.namespace, "StatefulSet", "ledger")
    _decision, rollback = judge(stack, prometheus, workload)
    (judged,) = rollback.judgment["kpis"]
    assert judged["how"] == "side_by_side", judged
    assert judged["verdict"] == "confirmed" and judged["windows"]["old"] == judged["windows"]["new"]
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    live = stack.apps.read_namespaced_stateful_set("ledger", stack.namespace)
    assert live.spec.template.spec.containers[0].image == "demo/ledger:1.0.0"


def test_too_little_traffic_to_judge_waits_for_a_human(scene):
    # One request every 20 s: most 6-s windows see none, and a ratio over none is no point.
    quiet = kpi("5xx ratio", ERRORS, min_samples=12)
    stack, _, prometheus = scene(policy(quiet), rate=0.05)
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-errors")
    time.sleep(SETTLE)
    decision, rollback = judge(stack, prometheus, workload)
    (judged,) = rollback.judgment["kpis"]
    # 40 s at a 2-s step is 21 points a side with traffic; the quiet windows are NaN.
    assert judged["verdict"] == "nodata" and judged["n_new"] < 12, judged
    assert (decision.outcome, decision.reason) == ("awaiting_approval", "judgment_inconclusive")
    assert stack.image("checkout") == "demo/checkout:1.1.0-errors"
