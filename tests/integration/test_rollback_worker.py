"""The rollback job in a real RQ worker: SIGKILLed mid-job, it still reverts exactly once."""

import os
import signal
import subprocess
import sys

import pytest

from config.policy import Policy
from receiver.app import create_app
from testbed.processes import run_burst_worker
from tests import samples
from tests.conftest import wait_for
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kube, redis_url, tmp_path):
    """Start `backstop worker` processes with a given environment; stop them afterwards."""
    started = []

    def start(**env) -> subprocess.Popen:
        config = tmp_path / "policy.yaml"
        config.write_text(
            "mode: enforce\ndefaults:\n  min_firing: 0s\n  known_good_min_age: 0s\n"
            "  rollout_timeout: 60s\n  cooldown: 0s\n"
        )
        full = {
            **os.environ,
            "REDIS_URL": redis_url,
            "BACKSTOP_CONFIG": str(config),
            "KUBECONFIG": str(kube.kubeconfig),
            **env,
        }
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver.cli", "worker"],
            env=full,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.parametrize(
    "point", ["after_lock", "after_evidence", "after_patch", "during_wait", "during_verification"]
)
def test_killed_worker_reverts_exactly_once(make_stack, worker, tmp_path, point):
    stack = make_stack(FAST)
    workload = bad_release(stack)
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    marker = tmp_path / "killed"
    worker(BACKSTOP_TESTPOINT_KILL=point, BACKSTOP_TESTPOINT_ONCE=str(marker))
    done = wait_for(
        lambda: (r := stack.store.rollbacks.get(decision.job_id)) and r.terminal and r,
        timeout=120,
        interval=0.5,
        message="the rollback to finish",
    )
    assert marker.exists()  # the work horse really was killed at that point
    assert (done.status, done.target_revision) == ("verified", "1"), done.reason
    assert done.attempts == 2
    # Exactly one revert: one new revision (3), none after it.
    assert stack.revision("checkout") == "3" and done.created_revision == "3"
    assert stack.image("checkout") == "shop/checkout:1"
    incident = wait_for(
        lambda: (i := stack.store.incidents.get(done.id)) and i.pagerduty.state != "pending" and i,
        timeout=30,
        message="the incident job to finish",
    )
    assert incident.status == "verified"
    assert incident.jira.state == incident.pagerduty.state == "not_configured"


def test_without_a_cluster_a_rollback_fails_and_says_why(
    make_settings, redis_url, tmp_path, webhook_headers
):
    """`make run` without KUBECONFIG: decisions still work; rollbacks fail, recorded."""
    config = tmp_path / "policy.yaml"
    config.write_text("mode: enforce\ndefaults:\n  min_firing: 0s\n")
    app = create_app(
        make_settings(),
        policy=Policy.model_validate({"mode": "enforce", "defaults": {"min_firing": "0s"}}),
    )
    web = app.test_client()
    web.post(
        "/webhooks/deployments",
        headers=webhook_headers,
        json=samples.deployment_event(minutes_ago=5),
    )
    answer = web.post(
        "/webhooks/alertmanager", headers=webhook_headers, json=samples.kill_switch(minutes_ago=0)
    ).get_json()
    [decision] = answer["decisions"]
    assert decision["outcome"] == "rollback"
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env.update({"REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(config)})
    run_burst_worker(env)
    rollbacks = web.get("/api/v1/rollbacks", headers={"Authorization": "Bearer test-api-token"})
    [rollback] = rollbacks.get_json()["rollbacks"]
    assert rollback["status"] == "failed" and "no Kubernetes configured" in rollback["reason"]
