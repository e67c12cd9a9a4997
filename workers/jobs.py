"""RQ job entry points. Thin: each loads the process context and calls the engine.

The contracts (job ids, arguments) are defined in core/queues.py.
"""

import functools
import logging

from rq import get_current_job

from core import logs, queues
from core.errors import PermanentError, TransientError
from workers.context import process_context
from workers.incidents import Notifier

log = logging.getLogger("backstop.jobs")


def traced(job_function):
    """Run a job with its ids bound for logging: those it was enqueued under (the webhook's
    request id, ...), its own job id, and the ids among its arguments. Jobs it enqueues
    inherit them, so one request id leads from a webhook to its incident."""

    @functools.wraps(job_function)
    def run(**kwargs):
        job = get_current_job()
        ids = dict(job.meta.get("trace", {})) if job is not None else {}
        ids.update({name: value for name, value in kwargs.items() if name.endswith("_id")})
        if job is not None:
            ids["job_id"] = job.id
            if job_function.__name__ == "rollback":
                ids["rollback_id"] = job.id  # a rollback's id is its job's
        with logs.bound(**ids):
            log.info("job %s started", job_function.__name__)
            result = job_function(**kwargs)
            log.info("job %s finished", job_function.__name__, extra={"fields": {"result": result}})
            return result

    return run


@traced
def recheck(episode_id: str) -> dict:
    """Re-evaluate a deferred episode now that it has fired for min_firing."""
    decision = process_context().engine.recheck(episode_id)
    if decision is None:
        return {"episode_id": episode_id, "outcome": None, "reason": "no deferred decision"}
    return decision.summary()


@traced
def rollback(decision_id: str, workload: str, bad_revision: str, mode: str = "enforce") -> dict:
    """Run (or resume) the rollback of `workload` from `bad_revision`."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("a rollback runs only as an RQ job: its id is the job's")
    request = queues.RollbackRequest.from_job(
        job.id, decision_id=decision_id, workload=workload, bad_revision=bad_revision, mode=mode
    )
    executor = process_context().executor(request.workload.cluster)
    try:
        result = executor.run(request)
    except PermanentError as exc:
        result = executor.fail(request, reason=f"permanent error: {exc}")
    except TransientError as exc:
        if not job.retries_left:
            result = executor.fail(request, reason=f"gave up after retries: {exc}")
        else:
            log.warning("rollback %s will be retried: %s", job.id, exc)
            raise
    return {"rollback_id": result.id, "status": result.status, "reason": result.reason}


@traced
def incident(rollback_id: str) -> dict:
    """File the incident of a finished rollback (Jira, PagerDuty, snapshots)."""
    context = process_context()
    found = Notifier.from_settings(context.store, context.policy, context.settings).file_rollback(
        rollback_id
    )
    return _incident_summary(found, rollback_id)


@traced
def page(decision_id: str, group: str | None = None) -> dict:
    """Page a human about a decision that needs one although nothing was rolled back (and
    about the others of its page group, core/paging.py)."""
    context = process_context()
    found = Notifier.from_settings(context.store, context.policy, context.settings).page_decision(
        decision_id, group=group
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
