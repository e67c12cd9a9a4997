"""R3: the Kubernetes API answers 409, 5xx, or hangs. Rollbacks are retried within bounds,
a workload is never left half-reverted, and what cannot succeed pages a human.

The faults come from a TLS proxy in front of the real test API server (testbed/faultproxy.py);
the rollbacks run in real `backstop worker --burst` processes whose KUBECONFIG points at it,
so the whole retry path is real: the client's error, Backstop's classification
(core/integrations/kubernetes.py), the job's retry decision (workers/jobs.py) and RQ's
Retry(max=3, interval=[10, 30, 60]). Only the waiting between attempts is skipped: after a
burst worker exits, the retry RQ scheduled is made due at once (`_make_due`) and the next
burst worker's scheduler enqueues it, as the real scheduler would 10-60 s later.

Attempts are counted where they happen, at the proxy. "Consistent" means the Deployment's
pod template is exactly the template of one revision that existed before the rollback: the
bad one (nothing applied) or the target (the revert applied), never anything in between.
"""

import os
from datetime import UTC, datetime

import pytest
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from core import queues
from core.errors import TransientError
from core.integrations.kubeconfig import api_client
from core.integrations.kubernetes import Kube
from core.revisions import TEMPLATE_HASH
from testbed.faultproxy import FaultProxy
from testbed.processes import run_burst_worker
from tests.conftest import wait_for
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

POLICY = (
    "mode: enforce\ndefaults:\n  min_firing: 0s\n  known_good_min_age: 0s\n"
    "  rollout_timeout: 60s\n  cooldown: 0s\n"
)
ATTEMPTS = 1 + queues.ROLLBACK_RETRY.max  # the first run and every retry RQ grants
# A burst worker may wait out one request timeout (30 s) on a hang; generous on a busy machine.
BURST_TIMEOUT = 240


@pytest.fixture
def proxy(kube):
    """The fault proxy in front of the session's API server, stopped after the test."""
    try:
        faulty = FaultProxy(kube.kubeconfig)
    except ValueError as exc:
        if kube.local:  # our own control plane uses a bearer token: this is a bug
            raise
        # BACKSTOP_TEST_KUBECONFIG names a cluster whose admin authenticates with a client
        # certificate, which a proxy that ends TLS cannot present upstream.
        pytest.skip(f"external cluster: {exc}")
    with faulty:
        yield faulty


@pytest.fixture
def worker_env(redis_url, proxy, pagerduty_server, tmp_path):
    """The environment of a worker that reaches Kubernetes only through the proxy."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "BACKSTOP_CONFIG": str(policy),
        "KUBECONFIG": str(proxy.kubeconfig),
        "PAGERDUTY_ROUTING_KEY": pagerduty_server.routing_key,
        "PAGERDUTY_EVENTS_URL": pagerduty_server.url,
        "PAGERDUTY_CA_FILE": str(pagerduty_server.ca_path),
    }


class Rollback:
    """One rollback under test: the stack, its workload, its decision, and the wire."""

    def __init__(self, stack, proxy: FaultProxy, env: dict):
        self.stack, self.proxy, self.env = stack, proxy, env
        self.workload = bad_release(stack)
        self.path = f"/apis/apps/v1/namespaces/{stack.namespace}/deployments/{self.workload.name}"
        self.known = self._templates()
        assert set(self.known) == {"1", "2"}
        self.decision = stack.alert(self.workload)
        assert self.decision.outcome == "rollback"
        self.runs = 0

    @property
    def job_id(self) -> str:
        return self.decision.job_id

    def record(self):
        return self.stack.store.rollbacks.get(self.job_id)

    def job(self):
        return queues.queue(self.stack.redis, queues.ROLLBACKS).fetch_job(self.job_id)

    def run_once(self) -> None:
        """One `backstop worker --burst`: due jobs, then until the queues are empty."""
        run_burst_worker(self.env, timeout=BURST_TIMEOUT)
        self.runs += 1

    def retry_now(self) -> bool:
        """If RQ scheduled a retry of the job, make it due now; False when there is none."""
        job = self.job()
        if job is None or job.get_status() != JobStatus.SCHEDULED:
            return False
        registry = ScheduledJobRegistry(queue=queues.queue(self.stack.redis, queues.ROLLBACKS))
        registry.schedule(job, datetime.now(UTC))
        return True

    def run_to_the_end(self):
        """Run workers, retry after retry, until RQ stops retrying; the rollback record."""
        self.run_once()
        while self.retry_now():
            assert self.runs < ATTEMPTS, "RQ retried beyond ROLLBACK_RETRY"
            self.run_once()
        return self.record()

    def patches(self):
        return self.proxy.exchanges("PATCH", self.path)

    def live_revision(self) -> str:
        """Which known revision's pod template the Deployment runs; fails on anything else."""
        template = self.stack.kube.get("Deployment", self.stack.namespace, self.workload.name)
        matches = [r for r, t in self.known.items() if t == template["spec"]["template"]]
        live = template["spec"]["template"]
        assert len(matches) == 1, f"the pod template is no known revision's: {live}"
        return matches[0]

    def _templates(self) -> dict[str, dict]:
        """Revision -> pod template of each ReplicaSet, as a Deployment would carry it."""
        owner = self.stack.kube.get("Deployment", self.stack.namespace, self.workload.name)
        templates = {}
        for replica_set in self.stack.kube.owned("ReplicaSet", owner):
            template = replica_set["spec"]["template"]
            template["metadata"]["labels"].pop(TEMPLATE_HASH["Deployment"])
            revision = replica_set["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            templates[revision] = template
        return templates


@pytest.fixture
def rollback(make_stack, proxy, worker_env):
    """A bad release of `checkout` (revision 2 after a good 1), and its rollback decided."""
    return Rollback(make_stack(FAST), proxy, worker_env)


def assert_reverted_once(rollback: Rollback, done) -> None:
    """Verified, back on revision 1's template, as one new revision (3): one revert."""
    assert (done.status, done.target_revision) == ("verified", "1"), done.reason
    assert rollback.live_revision() == "1"
    assert rollback.stack.revision("checkout") == "3" == done.created_revision
    assert sum(e.forwarded for e in rollback.patches()) == 1


# -- (a) 409 -----------------------------------------------------------------------------


def test_a_conflict_on_the_patch_is_retried_from_a_fresh_read(rollback):
    rollback.proxy.fail("PATCH", rollback.path, 409, times=1)
    done = rollback.run_to_the_end()
    assert_reverted_once(rollback, done)
    assert [e.status for e in rollback.patches()] == [409, 200]
    # Handled inside the one attempt (pre-flight again on a fresh read), not by RQ.
    assert (done.attempts, rollback.runs) == (1, 1)


# -- (b) 5xx -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status"),
    [("PATCH", 503), ("GET", 500)],
)
def test_server_errors_are_retried_by_the_job_and_the_rollback_completes(rollback, method, status):
    rollback.proxy.fail(method, rollback.path, status, times=2)
    done = rollback.run_to_the_end()
    assert_reverted_once(rollback, done)
    seen = [e.status for e in rollback.proxy.exchanges(method, rollback.path)]
    assert seen[:3] == [status, status, 200]
    # Each fault cost one RQ retry; the third attempt finished it, inside the budget.
    assert (done.attempts, rollback.runs) == (3, 3)
    assert rollback.job().retries_left == queues.ROLLBACK_RETRY.max - 2


# -- (c) hangs ---------------------------------------------------------------------------


def test_a_hung_patch_times_out_and_the_retry_completes_once_the_api_answers(rollback):
    hang = rollback.proxy.hang("PATCH", rollback.path)
    rollback.run_once()
    # The worker gave up on the request (the proxy never answered, never hung up) and
    # left the job to RQ's retry; nothing was applied.
    [held] = rollback.patches()
    wait_for(lambda: held.abandoned, message="the worker to hang up on the held PATCH")
    assert (held.status, held.forwarded) == (None, False)
    assert rollback.job().get_status() == JobStatus.SCHEDULED
    assert rollback.record().step("revert") is None
    assert rollback.live_revision() == "2"
    rollback.proxy.clear(hang)
    assert rollback.retry_now()
    rollback.run_once()
    done = rollback.record()
    assert_reverted_once(rollback, done)
    assert done.attempts == 2


def test_an_answer_lost_after_the_patch_applied_does_not_revert_twice(rollback):
    """The API server applied the revert, the worker was told 504: the retry finds the
    revert it made (by the template it expected) and carries on instead of patching again."""
    rollback.proxy.fail("PATCH", rollback.path, 504, times=1, forward=True)
    done = rollback.run_to_the_end()
    assert_reverted_once(rollback, done)
    assert [(e.status, e.forwarded) for e in rollback.patches()] == [(504, True)]
    assert done.attempts == 2
    assert "earlier attempt applied the revert" in done.step("revert").detail


def test_a_hung_read_costs_one_timeout_not_one_per_urllib3_retry(proxy, kube_namespace):
    """urllib3 repeats a timed-out GET three times unless told not to: a hung API server
    then held a worker for four timeouts per call."""
    with api_client(str(proxy.kubeconfig)) as api:
        kube = Kube(api, timeout=2)
        path = f"/api/v1/namespaces/{kube_namespace}/pods"
        proxy.hang("GET", path)
        with pytest.raises(TransientError, match="ReadTimeoutError"):
            kube.pods(kube_namespace, {"app": "checkout"})
        [held] = proxy.exchanges("GET", path)  # one attempt, not four
        wait_for(lambda: held.abandoned, message="the client to hang up on the held request")
        proxy.clear()
        assert held.status is None and len(proxy.exchanges("GET", path)) == 1
        assert kube.pods(kube_namespace, {"app": "checkout"}) == []  # answered again


def test_a_long_retry_after_is_not_slept_on(proxy, kube_namespace):
    """urllib3 sleeps on a 503's Retry-After before repeating a GET, up to six hours by
    default; Backstop's client waits at most RETRY_AFTER_MAX, then the answer counts."""
    with api_client(str(proxy.kubeconfig)) as api:
        kube = Kube(api, timeout=10)
        path = f"/api/v1/namespaces/{kube_namespace}/pods"
        proxy.fail("GET", path, 503, times=1, retry_after=3600)
        assert kube.pods(kube_namespace, {"app": "checkout"}) == []
        assert [e.status for e in proxy.exchanges("GET", path)] == [503, 200]


# -- (d) persistent faults ---------------------------------------------------------------


def assert_failed_and_paged(rollback: Rollback, done, reason: str, pagerduty) -> None:
    assert done.status == "failed"
    assert reason in done.reason
    incident = rollback.stack.store.incidents.get(done.id)
    assert (incident.status, incident.pagerduty.state) == ("failed", "delivered")
    [event] = [e for e in pagerduty.events if e["dedup_key"] == incident.key]
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["rollback"]["reason"] == done.reason


@pytest.mark.parametrize(
    ("status", "reason"),
    [(403, "permanent error: Kubernetes API 403"), (422, "permanent error: Kubernetes API 422")],
)
def test_a_permanent_error_fails_at_once_pages_and_applies_nothing(
    rollback, pagerduty_server, status, reason
):
    rollback.proxy.fail("PATCH", rollback.path, status)
    done = rollback.run_to_the_end()
    assert_failed_and_paged(rollback, done, reason, pagerduty_server)
    assert [e.status for e in rollback.patches()] == [status]  # never retried
    assert (done.attempts, rollback.runs) == (1, 1)
    assert rollback.live_revision() == "2"  # the bad revision, untouched


def test_server_errors_beyond_the_retry_budget_fail_page_and_apply_nothing(
    rollback, pagerduty_server
):
    rollback.proxy.fail("PATCH", rollback.path, 503)
    done = rollback.run_to_the_end()
    assert_failed_and_paged(rollback, done, "gave up after retries", pagerduty_server)
    assert [e.status for e in rollback.patches()] == [503] * ATTEMPTS
    assert (done.attempts, rollback.runs) == (ATTEMPTS, ATTEMPTS)
    assert rollback.live_revision() == "2"


def test_an_api_that_fails_after_the_revert_leaves_the_reverted_revision(
    rollback, pagerduty_server
):
    """The revert went through, then every read of the Deployment fails: the rollback
    fails and pages, and the workload runs the target revision's template, whole."""
    rollback.proxy.fail("GET", rollback.path, 503, after=("PATCH", rollback.path))
    done = rollback.run_to_the_end()
    assert_failed_and_paged(rollback, done, "gave up after retries", pagerduty_server)
    assert [e.status for e in rollback.patches()] == [200]  # applied once, never again
    assert done.step("revert").status == "ok"
    assert rollback.live_revision() == "1"
