"""Incidents: every terminal rollback outcome except a dry run becomes a record for humans.

The record names the workload, both revisions, the outcome and its reason, and the
severity the outcome deserves. Its delivery to Jira and PagerDuty is tracked per target;
a target that is not configured is recorded as `not_configured`, so "why was nobody
paged?" always has an answer.
"""

from workers.records import utcnow

SEVERITY = {
    "verified": "warning",
    "verification_failed": "critical",
    "blocked": "critical",
    "failed": "critical",
}


def summary(rollback) -> str:
    """One line naming the workload, both revisions and the outcome."""
    target = rollback.created_revision or rollback.target_revision or "?"
    return (
        f"Backstop rollback of {rollback.workload.workload().key}: revision "
        f"{rollback.bad_revision} -> {target}: {rollback.status} ({rollback.reason})"
    )


def file_incident(context, rollback_id: str) -> dict:
    """Record the incident for a rollback and its delivery state per target."""
    rollback = context.store.rollbacks.get(rollback_id)
    if rollback is None:
        return {"rollback_id": rollback_id, "filed": False, "reason": "rollback not found"}
    settings = context.settings
    delivery = {
        "jira": "pending" if getattr(settings, "jira_url", None) else "not_configured",
        "pagerduty": "pending"
        if getattr(settings, "pagerduty_routing_key", None)
        else "not_configured",
    }
    record = {
        "rollback_id": rollback_id,
        "summary": summary(rollback),
        "severity": SEVERITY.get(rollback.status, "error"),
        "status": rollback.status,
        "delivery": delivery,
        "updated_at": utcnow().isoformat(),
    }
    context.store.rollbacks.save_incident(rollback_id, record)
    return record
