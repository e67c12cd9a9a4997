"""A real `backstop worker` (RQ's forking worker, which prepares settings, policy and
kubeconfigs once for the work horses it forks) applies a changed policy file to the next
job without a restart, and outlives a policy file that cannot be parsed. While idle it keeps
a spare work horse, which takes the next job, and which ends with the worker."""

import os
import sys
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from core.models import Workload
from core.queues import RollbackRequest, enqueue_rollback
from core.records import Rollback
from core.store.rollbacks import RollbackStore
from testbed.processes import launch, terminate
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

# A workload in a cluster the policy does not guard: its rollback fails at once, naming the
# clusters the policy guards, which shows which policy the work horse ran with.
ELSEWHERE = Workload("beta", "shop", "Deployment", "checkout")


@pytest.fixture
def worker(redis_url, tmp_path):
    """A long-running worker process on the test Redis and a policy file it reads."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: enforce\ncluster: alpha\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env.update({"REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(policy)})
    log = tmp_path / "worker.log"
    process = launch([sys.executable, "-m", "cli.main", "worker"], log, env=env)
    try:
        yield policy, process, log
    finally:
        terminate(process)
        sys.stderr.write(log.read_text(errors="replace"))  # for the session's secret scan


def roll_back(connection, revision: str) -> str:
    """Enqueue a rollback of ELSEWHERE from `revision`; its job id."""
    request = RollbackRequest.new(
        decision_id=f"decision-{revision}", workload=ELSEWHERE, bad_revision=revision
    )
    return enqueue_rollback(connection, request)


def finished(connection, job_id: str) -> Rollback:
    """The rollback's record once it ended."""
    store = RollbackStore(connection)
    return wait_for(
        lambda: (found := store.get(job_id)) is not None and found.terminal and found,
        timeout=60,
        message=f"rollback {job_id} to end",
    )


def test_a_changed_policy_applies_to_the_next_job_without_a_restart(worker, redis_client):
    policy, process, _ = worker
    first = finished(redis_client, roll_back(redis_client, "1"))
    assert first.status == "failed" and "Backstop guards: alpha" in first.reason
    policy.write_text("mode: enforce\ncluster: gamma\n")
    second = finished(redis_client, roll_back(redis_client, "2"))
    assert "Backstop guards: gamma" in second.reason
    assert process.poll() is None  # the same worker process throughout


def test_a_broken_policy_fails_the_job_and_the_worker_carries_on(worker, redis_client):
    policy, process, log = worker
    policy.write_text("mode: [enforce\n")  # not YAML
    broken = roll_back(redis_client, "3")
    job = Job.fetch(broken, connection=redis_client, serializer=JSONSerializer)
    wait_for(
        lambda: job.get_status(refresh=True) in ("scheduled", "failed"),
        timeout=60,
        message="the job to fail on the broken policy",
    )
    assert "config.policy.PolicyError" in log.read_text()  # the job's failure, logged
    job.cancel()  # its retry would otherwise run on the repaired policy below
    policy.write_text("mode: enforce\ncluster: delta\n")
    repaired = finished(redis_client, roll_back(redis_client, "4"))
    assert "Backstop guards: delta" in repaired.reason
    assert process.poll() is None


def spares(worker_pid: int) -> list[int]:
    """The worker's spare work horses: its children that lead a process group of their own
    (RQ's scheduler, its other child, stays in the worker's group)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == worker_pid and int(fields[2]) == int(entry.name):
            found.append(int(entry.name))
    return found


def test_an_idle_worker_hands_the_next_job_to_a_spare_and_ends_it_when_it_stops(
    worker, redis_client
):
    _, process, log = worker
    [spare] = wait_for(lambda: spares(process.pid), timeout=60, message="a spare work horse")
    done = finished(redis_client, roll_back(redis_client, "5"))
    assert "Backstop guards: alpha" in done.reason  # the job ran, on the current policy
    assert f"handed to spare work horse {spare}" in log.read_text()
    # The worker forks the next spare; when it stops, that one ends with it.
    [following] = wait_for(lambda: spares(process.pid), timeout=60, message="the next spare")
    assert following != spare
    terminate(process)
    wait_for(
        lambda: not Path(f"/proc/{following}").exists(),
        timeout=10,
        message="the spare to end with its worker",
    )
