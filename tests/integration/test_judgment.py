"""The judgment step on the real control plane: the demo service's pods answer traffic by
their image, a real Prometheus scrapes it per revision (`pod_template_hash`), and the
rollback job judges the bad revision against the one before it before it reverts.

- a bad image (5 % errors against 0.1 %): confirmed, rolled back;
- errors that began before the rollout and carry on after it (a dependency's outage):
  not caused by the rollout, nothing reverted, the decision skipped;
- too little data yet: inconclusive, the decision waits for a human; approved, the same
  rollback goes on past its judgment and reverts.
"""

import argparse
import time
from types import SimpleNamespace

import pytest
import requests
import yaml
from kubernetes import client

from cli.judge import add_arguments, run, summary
from config.settings import Settings
from core.models import Workload
from core.queues import RollbackRequest
from gameday.demo import SERVICE_LABEL, DemoProcess
from testbed.prometheus import PrometheusServer
from tests.conftest import wait_for
from tests.workloads import FAST

pytestmark = pytest.mark.integration

ERRORS = (
    'sum(rate(demo_requests_total{deployment="$name",code="500",pod_template_hash="$hash"}[6s]))'
    ' / sum(rate(demo_requests_total{deployment="$name",pod_template_hash="$hash"}[6s]))'
)
POLICY = {
    **FAST,
    "services": [
        {
            "name": "checkout",
            "match": {"alertname": "High5xx"},
            "judgment": {
                "window": "40s",
                "step": "2s",
                "kpis": [{"name": "5xx ratio", "query": ERRORS, "min_samples": 8}],
            },
        }
    ],
}
# Long enough of one revision in Prometheus to judge on (the window, plus the rate's reach).
SETTLE = 44.0


@pytest.fixture
def judged(kube, kube_namespace, tmp_path, make_stack):
    """The stack, the demo service (traffic to pods labelled with the service) scraped by a
    real Prometheus, and the cluster's apps API."""
    with (
        DemoProcess(kube.kubeconfig, kube_namespace, tmp_path / "demo") as demo,
        PrometheusServer(tmp_path / "prometheus", [demo.address]) as prometheus,
    ):
        yield make_stack(POLICY), demo, prometheus


def deploy(stack, image: str) -> Workload:
    """Create `checkout` on `image`, or move it there; wait until its pods are Ready and the
    rollout is recorded."""
    labels = {"app": "checkout", SERVICE_LABEL: "checkout"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }
    try:
        body = {"spec": {"template": template}}
        stack.apps.patch_namespaced_deployment("checkout", stack.namespace, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        spec = {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}}}
        body = {"metadata": {"name": "checkout"}, "spec": {**spec, "template": template}}
        stack.apps.create_namespaced_deployment(stack.namespace, body)

    def rolled_out() -> bool:
        live = stack.apps.read_namespaced_deployment("checkout", stack.namespace)
        status = live.status
        return (
            status.observed_generation == live.metadata.generation
            and status.updated_replicas == status.available_replicas == 2 == status.replicas
        )

    wait_for(rolled_out, message=f"checkout on {image}")
    stack.record_history("Deployment")
    return Workload("default", stack.namespace, "Deployment", "checkout")


def judge(stack, prometheus, workload):
    decision = stack.alert(workload)
    assert decision.outcome == "rollback", decision.reason
    rollback = stack.roll_back(decision, stack.executor(prometheus=prometheus.client))
    return stack.store.decisions.get(decision.id), rollback


def test_a_bad_image_is_confirmed_and_rolled_back(judged, tmp_path):
    stack, _, prometheus = judged
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-errors")
    time.sleep(SETTLE / 2)
    # `backstop judge` says the same, from the cluster and Prometheus alone.
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = [f"--workload={stack.namespace}/Deployment/checkout", "--revision=2"]
    argv += ["--service=checkout", f"--config={policy_file}", f"--prometheus={prometheus.url}"]
    record = run(
        parser.parse_args(argv), Settings(), clusters=SimpleNamespace(kube=lambda _: stack.kube)
    )
    assert (record["verdict"], record["against"]) == ("confirmed", "1"), record
    assert summary(record).startswith(f"default/{stack.namespace}/Deployment/checkout: revision 2")
    decision, rollback = judge(stack, prometheus, workload)
    assert rollback.judgment["verdict"] == "confirmed", rollback.judgment["kpis"]
    (kpi,) = rollback.judgment["kpis"]
    assert kpi["how"] == "before_after" and kpi["median_new"] > 10 * kpi["median_old"]
    assert rollback.step("judgment").status == "ok"
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert stack.image("checkout") == "demo/checkout:1.0.0"
    assert decision.outcome == "rollback"


def test_errors_that_began_before_the_rollout_are_not_blamed_on_it(judged):
    stack, demo, prometheus = judged
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE / 2)
    fault = {"deployment": "checkout", "error_ratio": 0.05, "seconds": 600}
    requests.post(f"{demo.url}/control", json=fault, timeout=5).raise_for_status()
    time.sleep(SETTLE / 2)
    workload = deploy(stack, "demo/checkout:1.0.1")
    time.sleep(SETTLE)
    decision, rollback = judge(stack, prometheus, workload)
    (kpi,) = rollback.judgment["kpis"]
    assert kpi["trend_before"]["verdict"] == "confirmed", kpi
    assert rollback.judgment["verdict"] == "not_confirmed", rollback.judgment
    assert (rollback.status, rollback.reason) == ("blocked", "not_caused_by_rollout")
    assert (decision.outcome, decision.reason) == ("skipped", "not_caused_by_rollout")
    assert stack.image("checkout") == "demo/checkout:1.0.1"  # nothing reverted
    assert rollback.incident_job_id  # a human is paged with the evidence
    assert stack.store.automation.claimed(workload, "2") is None  # the claim was given back


def test_too_little_data_waits_for_a_human_then_goes_on(judged):
    stack, _, prometheus = judged
    deploy(stack, "demo/checkout:1.0.0")
    time.sleep(SETTLE)
    workload = deploy(stack, "demo/checkout:1.1.0-errors")
    decision, rollback = judge(stack, prometheus, workload)
    assert rollback.judgment["verdict"] in ("inconclusive", "nodata"), rollback.judgment
    assert (rollback.status, rollback.reason) == ("blocked", "judgment_inconclusive")
    assert (decision.outcome, decision.reason) == ("awaiting_approval", "judgment_inconclusive")
    assert stack.image("checkout") == "demo/checkout:1.1.0-errors"

    approved = stack.engine.approve(decision.id, actor="alice", reason="the canary is bad")
    assert approved.outcome == "rollback" and approved.job_id == rollback.id
    request = RollbackRequest.new(
        decision_id=decision.id, workload=workload, bad_revision="2", mode="enforce"
    )
    resumed = stack.executor(prometheus=prometheus.client).run(request)
    assert resumed.status == "verified", (resumed.reason, resumed.steps[-1].detail)
    assert [s.name for s in resumed.steps].count("judgment") == 1  # not judged again
    assert stack.image("checkout") == "demo/checkout:1.0.0"
