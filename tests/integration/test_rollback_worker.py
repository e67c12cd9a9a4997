"""The rollback job in a real RQ worker: SIGKILLed mid-job, it still reverts exactly once."""

import os
import signal
import subprocess
import sys

import pytest

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
