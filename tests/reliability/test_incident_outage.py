"""R4: Jira and PagerDuty are down for minutes. The rollback is not delayed: it is verified
while the incident job fails and waits for its retries on the incidents queue. After they
recover, the incident is filed exactly once: one Jira issue, one PagerDuty incident.

Time is driven, not waited for: the real retry schedule (core/queues.py INCIDENT_RETRY,
10 s, 30 s, 60 s, ... 15 min) is what RQ records in its ScheduledJobRegistry; the test checks
that each failed attempt is scheduled again, then moves it due, and the running worker's
scheduler enqueues it as it would once that time came. Nothing in the product changes for
the test, and the schedule under test is the one production runs.
"""

from datetime import UTC, datetime

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from core import queues
from tests.conftest import wait_for
from tests.reliability.conftest import incident_env
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

POLICY = (
    "mode: enforce\ndefaults:\n  min_firing: 0s\n  known_good_min_age: 0s\n"
    "  rollout_timeout: 60s\n  cooldown: 0s\nincidents:\n  jira:\n    project: OPS\n"
)
RETRIES_DURING_OUTAGE = 3  # 10 s + 30 s + 60 s of the real schedule, and the first attempt


def fail(double, how: str) -> None:
    """Make a double fail: answer 500, or refuse connections."""
    if how == "5xx":
        double.fail_with(500)
    else:
        double.down()


def recover(double, how: str) -> None:
    if how == "5xx":
        double.clear()
    else:
        double.up()


def attempts(stack, rollback_id: str) -> int:
    incident = stack.store.incidents.get(rollback_id)
    return incident.jira.attempts if incident else 0


def move_due(stack, job_id: str) -> None:
    """The retry's time has come: what the scheduler would see when it had."""
    incidents = queues.queue(stack.redis, queues.INCIDENTS)
    registry = ScheduledJobRegistry(queue=incidents)
    job = Job.fetch(job_id, connection=stack.redis, serializer=JSONSerializer)
    registry.schedule(job, datetime.now(UTC))


def wait_scheduled(stack, rollback_id: str, job_id: str, after_attempts: int) -> None:
    """The attempt failed and RQ scheduled the job's next retry (in the future)."""
    registry = ScheduledJobRegistry(queue=queues.queue(stack.redis, queues.INCIDENTS))
    wait_for(
        lambda: attempts(stack, rollback_id) >= after_attempts and job_id in registry.get_job_ids(),
        timeout=60,
        message=f"attempt {after_attempts} to fail and be scheduled for a retry",
    )
    assert registry.get_scheduled_time(job_id) > datetime.now(UTC)


@pytest.mark.parametrize("how", ["5xx", "refused"])
def test_incident_targets_down_for_minutes_file_once_after_recovery(
    make_stack, backstop_worker, jira_server, pagerduty_server, how
):
    stack = make_stack(FAST)
    workload = bad_release(stack)
    decision = stack.alert(workload)
    for double in (jira_server, pagerduty_server):
        fail(double, how)
    backstop_worker(POLICY, **incident_env(jira_server, pagerduty_server))

    # The rollback goes on as if nothing were wrong.
    rollback = wait_for(
        lambda: (r := stack.store.rollbacks.get(decision.job_id)) and r.terminal and r,
        timeout=120,
        interval=0.5,
        message="the rollback to finish",
    )
    assert rollback.status == "verified", rollback.reason
    assert stack.revision("checkout") == "3"

    # The incident job fails and is retried on its schedule, for "minutes".
    job_id = rollback.incident_job_id
    for attempt in range(1, RETRIES_DURING_OUTAGE + 2):
        wait_scheduled(stack, rollback.id, job_id, attempt)
        pending = stack.store.incidents.get(rollback.id)
        assert (pending.jira.state, pending.pagerduty.state) == ("pending", "pending")
        if attempt <= RETRIES_DURING_OUTAGE:
            move_due(stack, job_id)
    assert jira_server.issues == {} and pagerduty_server.incidents == {}

    for double in (jira_server, pagerduty_server):
        recover(double, how)
    move_due(stack, job_id)
    incident = wait_for(
        lambda: (
            (i := stack.store.incidents.get(rollback.id))
            and i.jira.state == i.pagerduty.state == "delivered"
            and i
        ),
        timeout=60,
        interval=0.5,
        message="the incident to be filed after recovery",
    )
    [issue] = jira_server.issues.values()
    assert incident.jira.ref == issue.key and issue.comments == []
    names = [a.filename for a in issue.attachments]
    assert sorted(names) == sorted(set(names)) and "rollback.json" in names
    [(key, paged)] = pagerduty_server.incidents.items()
    assert key == incident.key and paged.state == "resolved"
    assert [e["event_action"] for e in pagerduty_server.events] == ["trigger", "resolve"]
    assert incident.jira.attempts == RETRIES_DURING_OUTAGE + 2
