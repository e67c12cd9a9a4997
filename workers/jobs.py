"""RQ job entry points. Thin: each loads the process context and calls the engine.

The contracts (job ids, arguments) are defined in core/queues.py.
"""

import functools
import logging
import time

from redis.exceptions import LockError
from rq import get_current_job

from core import logs, queues
from core.errors import PermanentError, TransientError
from core.integrations.jira import Tickets
from core.integrations.objects import Objects
from core.records import FrozenOwner, utcnow
from core.store import keys
from workers import freezes, quarantines
from workers.chat import Chatter
from workers.context import Context, process_context
from workers.incidents import Notifier
from workers.owners import Hand, Situation, registry

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
def judge_candidates(episode_id: str) -> dict:
    """Judge each rollout that could explain a waiting episode, then decide it again."""
    return process_context().candidate_judge().run(episode_id)


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


@traced
def chat(rollback_id: str, event: str, attempt: int = 1, decision_id: str | None = None) -> dict:
    """Tell the chat targets (Slack, Teams) of one event of a rollback (workers/chat.py)."""
    context = process_context()
    job = get_current_job()
    states = Chatter.from_settings(context.store, context.policy, context.settings).deliver(
        rollback_id=rollback_id,
        event=event,
        attempt=attempt,
        decision_id=decision_id,
        owner=job.id if job is not None else None,
    )
    return {"rollback_id": rollback_id, "event": event, "targets": states}


def _incident_summary(incident, ref: str) -> dict:
    if incident is None:
        return {"ref": ref, "filed": False}
    return {
        "incident": incident.id,
        "jira": incident.jira.state,
        "pagerduty": incident.pagerduty.state,
    }


# Longer than a review may run (its job timeout): a review that died holding the lock holds
# the next ones up no longer than that.
REVIEW_LOCK_SECONDS = queues.FREEZE_REVIEW_TIMEOUT + 60


@traced
def review_freezes() -> dict:
    """Review the active freezes (workers/freezes.py) and, while any remain, schedule the
    next review on the policy's `owners.review_interval`. One review runs at a time: one
    that finds another running leaves the freezes to it."""
    context = process_context()
    # Scheduled before the work too, so that a review that crashes or times out does not
    # end the chain; the later call collapses into this one (same due second).
    _schedule_next_review(context)
    lock = context.connection.lock(keys.FREEZE_REVIEW_LOCK, timeout=REVIEW_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return {"skipped": "another freeze review is running"}
    try:
        summary = freezes.review_freezes(context.store, _hand_for(context))
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("the freeze review outlived its lock")
    # Again after the work: a freeze made while the review ran, when none was active
    # before, still gets its review.
    _schedule_next_review(context)
    return summary


@traced
def review_quarantines() -> dict:
    """End the quarantines that are due (workers/quarantines.py) and, while any remain
    active, schedule the next review."""
    context = process_context()
    tickets = Tickets.from_settings(context.settings)
    policy = context.policy.quarantine
    summary = quarantines.review_quarantines(
        context.store, tickets, policy, utcnow(), chat=context.policy.chat
    )
    if summary["active"]:
        due = freezes.next_review(utcnow(), policy.review_interval)
        queues.schedule_quarantine_review(context.connection, due)
    return summary


def _schedule_next_review(context: Context) -> None:
    if context.store.freezes.active():
        due = freezes.next_review(utcnow(), context.policy.owners.review_interval)
        queues.schedule_freeze_review(context.connection, at=due)


def _hand_for(context: Context) -> freezes.HandFor:
    """The hand that thaws a freeze, on its workload's cluster (one Situation each)."""
    situations: dict[str, Situation] = {}

    def hand_for(freeze: FrozenOwner) -> Hand:
        cluster = freeze.workload.cluster
        if cluster not in situations:
            kube = context.clusters.kube(cluster)  # PermanentError for an unknown cluster
            situations[cluster] = Situation(
                kube=kube,
                objects=Objects(kube.api),
                store=context.store,
                policy=context.policy.owners,
                clock=utcnow,
                sleep=time.sleep,
            )
        return registry.thawing_hand(freeze, situations[cluster])

    return hand_for
