"""The game days of a service that judges its revisions (a `judgment:` block, issue 21):
before Backstop reverts, is the new revision really worse than the one it returns to?

Both workloads' policy judges one KPI, the 5xx ratio of a revision's own pods
(`pod_template_hash`, which the demo service's series carry), over the last 40 s at a 2-s
step, as tests/integration/test_judgment.py does against the same demo service.

- `dependency_outage`: a harmless release, then a dependency fails (a /control fault on
  the Deployment, old and new pods alike) and the kill switch fires. The judgment finds
  the new revision no worse than the old one: nothing is reverted, a human is paged.
- `two_rollouts`: two releases inside the lookback, the second bad. The timing alone is
  ambiguous; the candidates are judged, only the second is confirmed worse, and it is
  rolled back to the first.
"""

import json
import time
from datetime import UTC, datetime

from core.records import Decision
from gameday.behaviours import DEFAULT_BEHAVIOUR
from gameday.scenarios import (
    Failed,
    Result,
    Run,
    Scenario,
    _rollback_timeline,
    _rolled_back,
    image,
)
from gameday.stack import Service

# One revision's 5xx ratio: `$hash` selects its pods' series.
ERRORS = (
    'sum(rate(demo_requests_total{namespace="$namespace",deployment="$name",code="500",'
    'pod_template_hash="$hash"}[6s])) / sum(rate(demo_requests_total{namespace="$namespace",'
    'deployment="$name",pod_template_hash="$hash"}[6s]))'
)
JUDGMENT = {
    "mode": "require",
    "confidence": 0.98,
    "window": "40s",
    "step": "2s",
    "kpis": [{"name": "5xx ratio", "query": ERRORS, "min_samples": 8}],
}

OUTAGE = "shipping"  # dependency_outage's workload
# The release's new pod is Ready (it takes traffic) this long before it counts as available,
# so the rolling update keeps the old pods serving beside it: 2 x MIN_READY in all.
MIN_READY = 60
OUTAGE_DELAY = 4.0  # seconds between the new pod taking traffic and the outage
OUTAGE_SECONDS = 180.0  # the fault's length; the play ends it once it has its answer
OUTAGE_RATIO = 0.05

TWICE = "pricing"  # two_rollouts' workload
# Between the two releases: the first must be live longer than known_good_min_age (20 s) to
# be the rollback's target, and hold enough points (8 at 2 s, plus the rate's 6 s) for the
# second to be judged against it over the window before the second began.
GAP = 30.0


def dependency_outage(run: Run, result: Result) -> None:
    # Why side by side: judged before/after, an outage that began after the release is
    # exactly what a bad release looks like (the new revision's errors against the old
    # one's calm before it). While the old pods still serve, both revisions are judged over
    # the same seconds, and a fault that hits both alike gives both the same ratio at every
    # step (the demo's counting is exact): not_confirmed, whatever the timing.
    _keep_old_pods_serving(run, OUTAGE)
    good = image(OUTAGE, "1.0.1")
    result.at("harmless release", datetime.now(UTC))
    released = _release(run, OUTAGE, good)
    run.wait(lambda: _serving_beside(run, OUTAGE), "the new pod to serve beside the old", 60)
    result.at("new pod serves beside the old ones", datetime.now(UTC))
    time.sleep(OUTAGE_DELAY)
    result.at("dependency outage (old and new pods fail alike)", datetime.now(UTC))
    run.fault(OUTAGE, OUTAGE_RATIO, OUTAGE_SECONDS)
    try:
        rollback = run.finished_rollback(OUTAGE)
    finally:
        # The outage is over: the pods answer as their image does again.
        run.fault(OUTAGE, DEFAULT_BEHAVIOUR.error_ratio, 0.5)
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    _rollback_timeline(run, result, rollback, decision)
    judged = rollback.judgment or {}
    kpis = judged.get("kpis", [])
    result.check(
        "judged side by side: both revisions' pods over the same window",
        bool(kpis) and all(k.get("how") == "side_by_side" for k in kpis),
        str([(k.get("name"), k.get("how"), k.get("n_new"), k.get("n_old")) for k in kpis]),
    )
    result.check(
        "the judgment: not confirmed", judged.get("verdict") == "not_confirmed", _said(judged)
    )
    result.check(
        "rollback blocked: not caused by the rollout",
        (rollback.status, rollback.reason) == ("blocked", "not_caused_by_rollout"),
        f"{rollback.status} {rollback.reason}",
    )
    result.check("no revert step", rollback.step("revert") is None)
    result.check(
        "nothing reverted: the release still runs",
        run.cluster.image(OUTAGE) == good and run.cluster.revision(OUTAGE) == released,
        f"{run.cluster.image(OUTAGE)}, revision {run.cluster.revision(OUTAGE)}",
    )
    result.check(
        "decision skipped: not caused by the rollout",
        (decision.outcome, decision.reason) == ("skipped", "not_caused_by_rollout"),
        f"{decision.outcome} {decision.reason}",
    )
    incident = run.filed(result, rollback)
    actions = [
        e.get("event_action")
        for e in run.stack.pagerduty.events
        if e.get("dedup_key") == incident.key
    ]
    result.check("a human is paged (PagerDuty triggered)", "trigger" in actions, str(actions))
    _no_revert_claimed(run, result, incident.key)
    result.check("exactly one rollback record", len(run.rollbacks(OUTAGE)) == 1)


def two_rollouts(run: Run, result: Result) -> None:
    first, bad = image(TWICE, "1.0.1"), image(TWICE, "1.1.0-errors")
    result.at("release 1 (harmless)", datetime.now(UTC))
    first_revision = _release(run, TWICE, first)
    run.cluster.wait_rolled_out(TWICE)
    time.sleep(GAP)
    result.at("release 2 (errors)", datetime.now(UTC))
    bad_revision = _release(run, TWICE, bad)
    rollback = _rolled_back(run, result, TWICE, first)
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    steps = [(s.outcome, s.reason) for s in decision.history]
    judging = next((s for s in decision.history if s.reason == "judging_candidates"), None)
    result.at("decision: deferred (judging_candidates)", judging.at if judging else None)
    result.check(
        "deferred while the candidates were judged, then rollback",
        ("deferred", "judging_candidates") in steps and steps[-1][0] == "rollback",
        str(steps),
    )
    verdicts = {
        revision: judged.get("verdict")
        for revision, judged in decision.candidates.get("revisions", {}).items()
    }
    result.check(
        "only release 2 confirmed worse than the revision before it",
        verdicts.get(bad_revision) == "confirmed"
        and verdicts.get(first_revision) != "confirmed"
        and decision.candidates.get("picked") == bad_revision,
        f"{verdicts}, picked {decision.candidates.get('picked')}",
    )
    result.check(
        "the decision's rollout is release 2 (confidence judged)",
        decision.rollout is not None
        and decision.rollout.revision == bad_revision
        and decision.confidence == "judged",
        f"{decision.rollout.revision if decision.rollout else None} {decision.confidence}",
    )
    result.check(
        "rolled back from release 2 to release 1, confirmed again by the rollback's judgment",
        (rollback.bad_revision, rollback.target_revision) == (bad_revision, first_revision)
        and (rollback.judgment or {}).get("verdict") == "confirmed",
        f"{rollback.bad_revision} -> {rollback.target_revision}; {_said(rollback.judgment)}",
    )


def _release(run: Run, name: str, new_image: str) -> str:
    """Deploy `new_image`; the revision it became (once the Deployment controller set it)."""
    before = run.cluster.revision(name)
    run.cluster.deploy(name, new_image)
    return run.wait(
        lambda: (found := run.cluster.revision(name)) != before and found,
        f"{name}'s new revision",
        30,
    )


def _keep_old_pods_serving(run: Run, name: str) -> None:
    """Make the next rollout of `name` keep its old pods serving for 2 x MIN_READY s: one
    new pod at a time (surge 1), none of the old ones gone before it is available, which it
    is MIN_READY s after it is Ready. No new revision (the pod template is unchanged)."""
    run.cluster.apps.patch_namespaced_deployment(
        name,
        run.stack.namespace,
        {
            "spec": {
                "minReadySeconds": MIN_READY,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
            }
        },
    )


def _serving_beside(run: Run, name: str) -> bool:
    """Does a pod of the new revision serve while every old one still does?"""
    found = run.cluster.apps.read_namespaced_deployment(name, run.stack.namespace)
    status, wanted = found.status, found.spec.replicas or 0
    if (status.observed_generation or 0) < found.metadata.generation:
        return False
    if (status.updated_replicas or 0) >= wanted:
        raise Failed(f"{name} rolled out at once: no old pod is left to judge beside")
    return (status.ready_replicas or 0) > wanted


def _no_revert_claimed(run: Run, result: Result, key: str) -> None:
    """The incident's Jira issue says the rollback was blocked, and nowhere that Backstop
    reverted the workload."""
    issues = [i for i in run.stack.jira.issues.values() if key in i.fields.get("labels", [])]
    result.check("one Jira issue for the incident", len(issues) == 1, f"{len(issues)} issues")
    summary = str(issues[0].fields.get("summary", ""))
    result.check("the Jira issue says blocked", summary.endswith(": blocked"), summary)
    text = json.dumps(issues[0].fields.get("description"))
    result.check(
        "the Jira issue claims no revert",
        "Backstop reverted" not in text,
        "its description says 'Backstop reverted the workload'",
    )


def _said(judgment: dict | None) -> str:
    return (judgment or {}).get("detail", "not judged")


SCENARIOS = [
    Scenario(
        "dependency_outage",
        "a harmless release, then a dependency's outage: judged not caused by the rollout, "
        "nothing reverted, a human paged",
        [Service(OUTAGE, judgment=JUDGMENT)],
        dependency_outage,
    ),
    Scenario(
        "two_rollouts",
        "two releases inside the lookback, the second bad: the candidates judged, the second "
        "rolled back to the first",
        [Service(TWICE, judgment=JUDGMENT)],
        two_rollouts,
    ),
]
