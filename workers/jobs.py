"""RQ job entry points. Thin: each loads the process context and calls the engine.

The contracts (job ids, arguments) are defined in workers/queues.py.
"""

import logging

from rq import get_current_job

from workers.context import process_context
from workers.errors import PermanentError, TransientError
from workers.incidents import Notifier

log = logging.getLogger("backstop.jobs")


def recheck(episode_id: str) -> dict:
    """Re-evaluate a deferred episode now that it has fired for min_firing."""
    decision = process_context().engine.recheck(episode_id)
    if decision is None:
        return {"episode_id": episode_id, "outcome": None, "reason": "no deferred decision"}
    return decision.summary()


def rollback(decision_id: str, workload: str, bad_revision: str, mode: str = "enforce") -> dict:
    """Run (or resume) the rollback of `workload` from `bad_revision`."""
    job = get_current_job()
    executor = process_context().executor()
    arguments = {
        "rollback_id": job.id,
        "decision_id": decision_id,
        "workload_key": workload,
        "bad_revision": bad_revision,
        "mode": mode,
    }
    try:
        result = executor.run(**arguments)
    except PermanentError as exc:
        result = executor.fail(reason=f"permanent error: {exc}", **arguments)
    except TransientError as exc:
        if not job.retries_left:
            result = executor.fail(reason=f"gave up after retries: {exc}", **arguments)
        else:
            log.warning("rollback %s will be retried: %s", job.id, exc)
            raise
    return {"rollback_id": result.id, "status": result.status, "reason": result.reason}


def incident(rollback_id: str) -> dict:
    """File the incident of a finished rollback (Jira, PagerDuty, snapshots)."""
    context = process_context()
    found = Notifier.from_settings(context.store, context.policy, context.settings).file_rollback(
        rollback_id
    )
    return _incident_summary(found, rollback_id)


def page(decision_id: str) -> dict:
    """Page a human about a decision that needs one although nothing was rolled back."""
    context = process_context()
    found = Notifier.from_settings(context.store, context.policy, context.settings).page_decision(
        decision_id
    )
    return _incident_summary(found, decision_id)


def _incident_summary(incident, ref: str) -> dict:
    if incident is None:
        return {"ref": ref, "filed": False}
    return {
        "incident": incident.id,
        "jira": incident.jira.state,
        "pagerduty": incident.pagerduty.state,
    }
