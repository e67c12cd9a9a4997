"""R2: the worker is SIGKILLed at each step of a rollback and of its incident; a worker
carries on, and the result is exactly one revert, one Jira issue and one PagerDuty incident.

Each case names a test point (core/testpoints.py): the first process to reach it kills
itself, as a crashing node would; RQ retries the job and the record of what is done stops
anything from happening twice.
"""

import pytest

from tests.conftest import wait_for
from tests.reliability.conftest import incident_env
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

POLICY = (
    "mode: enforce\ndefaults:\n  min_firing: 0s\n  known_good_min_age: 0s\n"
    "  rollout_timeout: 60s\n  cooldown: 0s\nincidents:\n  jira:\n    project: OPS\n"
)
ROLLBACK_POINTS = [
    "after_lock",
    "after_evidence",
    "after_patch",
    "during_wait",
    "during_verification",
]
INCIDENT_POINTS = ["after_jira_create", "after_jira_attach", "after_pagerduty_trigger"]
# Jira Cloud's search is eventually consistent: a new issue shows in search this much later,
# longer than the incident job's first retry (10 s) takes to come.
SEARCH_LAG = 12.0


@pytest.mark.parametrize("point", ROLLBACK_POINTS + INCIDENT_POINTS)
def test_killed_worker_reverts_and_files_exactly_once(
    make_stack, backstop_worker, jira_server, pagerduty_server, tmp_path, point
):
    jira_server.search_lag = SEARCH_LAG
    stack = make_stack(FAST)
    workload = bad_release(stack)
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    marker = tmp_path / "killed"
    backstop_worker(
        POLICY,
        BACKSTOP_TESTPOINT_KILL=point,
        BACKSTOP_TESTPOINT_ONCE=str(marker),
        **incident_env(jira_server, pagerduty_server),
    )
    done = wait_for(
        lambda: (r := stack.store.rollbacks.get(decision.job_id)) and r.terminal and r,
        timeout=120,
        interval=0.5,
        message="the rollback to finish",
    )
    incident = wait_for(
        lambda: (
            (i := stack.store.incidents.get(done.id))
            and i.jira.state != "pending"
            and i.pagerduty.state != "pending"
            and i
        ),
        timeout=120,
        interval=0.5,
        message="the incident job to finish",
    )
    assert marker.exists()  # the work horse really was killed at that point
    assert (done.status, done.target_revision) == ("verified", "1"), done.reason
    assert done.attempts == (2 if point in ROLLBACK_POINTS else 1)

    # Exactly one revert: one new revision (3), none after it, one revert step recorded.
    assert stack.revision("checkout") == "3" and done.created_revision == "3"
    assert stack.image("checkout") == "shop/checkout:1"
    assert [s.status for s in done.steps if s.name == "revert"] == ["ok"]

    # Exactly one Jira issue, with each piece of evidence attached once.
    assert (incident.jira.state, incident.pagerduty.state) == ("delivered", "delivered")
    [issue] = jira_server.issues.values()
    assert incident.jira.ref == issue.key and issue.comments == []
    names = [a.filename for a in issue.attachments]
    assert sorted(names) == sorted(set(names))
    assert {"rollback.json", "evidence-logs.txt", "evidence-events.txt"} <= set(names)

    # Exactly one PagerDuty incident (one dedup key), triggered and resolved.
    [(key, paged)] = pagerduty_server.incidents.items()
    assert key == incident.key and paged.state == "resolved"
