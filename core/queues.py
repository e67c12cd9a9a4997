"""The job contract: queue names, deterministic job ids, retries and enqueueing.

Job ids are deterministic and enqueued with `unique=True`, so duplicate deliveries and
concurrent receivers never create two jobs for the same thing. Jobs are referenced by
their import path, so the receiver never imports the job bodies.
"""

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from config.chat import ChatPolicy
from core import logs
from core.models import Workload

log = logging.getLogger("backstop.queues")

ROLLBACKS, DECISIONS, INCIDENTS = "rollbacks", "decisions", "incidents"
# Priority order: a Jira or PagerDuty outage must never delay a revert.
QUEUE_NAMES = (ROLLBACKS, DECISIONS, INCIDENTS)

RESULT_TTL = int(timedelta(days=7).total_seconds())
# RQ keeps failed jobs a year by default; a month is plenty to read and retry them.
FAILURE_TTL = int(timedelta(days=30).total_seconds())
ROLLBACK_TIMEOUT = int(timedelta(minutes=30).total_seconds())
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def queue(connection: redis.Redis, name: str, *, job_class: type | None = None) -> Queue:
    """One of Backstop's queues, with the JSON serializer."""
    return Queue(name, connection=connection, serializer=JSONSerializer, job_class=job_class)


def queues(connection: redis.Redis, *, job_class: type | None = None) -> list[Queue]:
    """Backstop's queues, highest priority first."""
    return [queue(connection, name, job_class=job_class) for name in QUEUE_NAMES]


def rollback_job_id(workload: Workload, bad_revision: str, *, mode: str = "enforce") -> str:
    """One rollback job per (workload, bad revision): `rollback-<workload hash>-<revision>`.

    A dry run has its own id (`dryrun-...`), so it never blocks a real rollback later.
    """
    prefix = "dryrun" if mode == "dry-run" else "rollback"
    return f"{prefix}-{workload.slug}-{_UNSAFE.sub('_', bad_revision)[:40]}"


@dataclass(frozen=True)
class RollbackRequest:
    """What one rollback job is asked to do: roll `workload` back from `bad_revision`, as
    `decision_id` decided, in `mode`. Its id is the job's, and the rollback record's."""

    id: str
    decision_id: str
    workload: Workload
    bad_revision: str
    mode: str = "enforce"

    @classmethod
    def new(
        cls, *, decision_id: str, workload: Workload, bad_revision: str, mode: str = "enforce"
    ) -> "RollbackRequest":
        """A request under its deterministic id (`rollback_job_id`)."""
        job_id = rollback_job_id(workload, bad_revision, mode=mode)
        return cls(job_id, decision_id, workload, bad_revision, mode)

    @classmethod
    def from_job(
        cls, job_id: str, *, decision_id: str, workload: str, bad_revision: str, mode: str
    ) -> "RollbackRequest":
        """The request a rollback job carries (the job's id and its `job_kwargs`)."""
        return cls(job_id, decision_id, Workload.from_key(workload), bad_revision, mode)

    def job_kwargs(self) -> dict:
        """The job's arguments: JSON values only, the workload as its key."""
        return {
            "decision_id": self.decision_id,
            "workload": self.workload.key,
            "bad_revision": self.bad_revision,
            "mode": self.mode,
        }


def incident_job_id(rollback_id: str, attempt: int = 1) -> str:
    """One incident job per terminal outcome of a rollback (a retried rollback has more)."""
    return f"incident-{rollback_id}-{attempt}"


# Chat events about a decision's wait for a human (told once per decision, under the id of
# the rollback it would run), rather than about a rollback's own progress.
DECISION_EVENTS = ("awaiting_approval", "denied")


def chat_event(event: str, *, attempt: int = 1, decision_id: str | None = None) -> str:
    """The key of one chat event of a rollback, told once to each target: an outcome or a
    start per attempt of the rollback (`verified:2`), a wait for approval and its denial
    per decision, the end of its quarantine once."""
    if event in DECISION_EVENTS and decision_id:
        return f"{event}:{decision_id}"
    if event == "quarantine_released":
        return event
    return f"{event}:{attempt}"


def chat_job_id(rollback_id: str, event_key: str) -> str:
    """One chat job per rollback and event key (`chat_event`)."""
    return f"chat-{rollback_id}-{_UNSAFE.sub('_', event_key)[:80]}"


def page_job_id(decision_id: str, group: str | None = None) -> str:
    """One page per page group (core/paging.py); without one, per decision."""
    return f"page-{group or decision_id}"


def recheck_job_id(episode_id: str) -> str:
    """One deferred re-check per episode."""
    return f"recheck-{episode_id}"


def candidates_job_id(episode_id: str) -> str:
    """One judgment of the candidate rollouts per episode."""
    return f"candidates-{episode_id}"


def freeze_review_job_id(due: datetime) -> str:
    """One freeze review per due second: `freeze-review-<unix seconds>`."""
    return f"freeze-review-{int(due.timestamp())}"


# A rollback is retried three times over a minute and a half (transient API errors); an
# outage of Jira, PagerDuty, Slack or Teams for hours (20 retries, the last ones 15 minutes
# apart), on its own queue, never in a rollback's way.
ROLLBACK_RETRY = Retry(max=3, interval=[10, 30, 60])
INCIDENT_RETRY = Retry(max=20, interval=[10, 30, 60, 120, 300, 600, 900])
RECHECK_RETRY = Retry(max=5, interval=[5, 15, 30, 60, 120])
# Judging candidates asks Prometheus and the cluster; a failure of either is retried.
CANDIDATES_RETRY = Retry(max=3, interval=[5, 15, 30])
# A review that failed as a whole (Redis away) is retried; its freezes wait for it.
FREEZE_REVIEW_RETRY = Retry(max=5, interval=[10, 30, 60, 120, 300])
FREEZE_REVIEW_TIMEOUT = int(timedelta(minutes=10).total_seconds())
# A review runs every review_interval while freezes are active: keeping each one's result
# for a week, like other jobs, would keep tens of thousands of them.
FREEZE_REVIEW_RESULT_TTL = int(timedelta(hours=1).total_seconds())


def _enqueue_once(
    connection: redis.Redis,
    queue_name: str,
    function: str,
    *,
    job_id: str,
    kwargs: dict,
    at: datetime | None = None,
    **options,
) -> str:
    """Enqueue (or schedule at `at`) a job under a deterministic id, at most once: a second
    call while the job is known to RQ changes nothing, which is what duplicate deliveries and
    concurrent receivers need. The job carries the ids bound now (the webhook's request id,
    the decision, the rollback) so that its worker logs under them too."""
    target = queue(connection, queue_name)
    options = {
        "job_id": job_id,
        "kwargs": kwargs,
        "meta": {"trace": logs.trace()},
        "unique": True,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        **options,
    }
    try:
        if at is None:
            target.enqueue_call(function, **options)
        else:
            target.enqueue_at(at, function, **options)
    except DuplicateJobError:
        pass  # already there: exactly what unique is for
    return job_id


def enqueue_rollback(connection: redis.Redis, request: RollbackRequest) -> str:
    """Enqueue `workers.jobs.rollback` once per request id; return the id."""
    return _enqueue_once(
        connection,
        ROLLBACKS,
        "workers.jobs.rollback",
        job_id=request.id,
        kwargs=request.job_kwargs(),
        timeout=ROLLBACK_TIMEOUT,
        retry=ROLLBACK_RETRY,
        description=f"roll back {request.workload.key} from revision {request.bad_revision}",
    )


def enqueue_incident(connection: redis.Redis, *, rollback_id: str, attempt: int = 1) -> str:
    """Enqueue `workers.jobs.incident` for a rollback's terminal outcome."""
    return _enqueue_once(
        connection,
        INCIDENTS,
        "workers.jobs.incident",
        job_id=incident_job_id(rollback_id, attempt),
        kwargs={"rollback_id": rollback_id},
        retry=INCIDENT_RETRY,
        description=f"file the incident for rollback {rollback_id}",
    )


def enqueue_chat(
    connection: redis.Redis,
    *,
    rollback_id: str,
    event: str,
    attempt: int = 1,
    decision_id: str | None = None,
) -> str:
    """Enqueue `workers.jobs.chat`: tell the chat targets of one event of a rollback."""
    kwargs: dict = {"rollback_id": rollback_id, "event": event, "attempt": attempt}
    if decision_id is not None:
        kwargs["decision_id"] = decision_id
    key = chat_event(event, attempt=attempt, decision_id=decision_id)
    return _enqueue_once(
        connection,
        INCIDENTS,
        "workers.jobs.chat",
        job_id=chat_job_id(rollback_id, key),
        kwargs=kwargs,
        retry=INCIDENT_RETRY,
        description=f"tell chat of {event} of rollback {rollback_id}",
    )


def notify_chat(
    connection: redis.Redis,
    chat: ChatPolicy,
    *,
    rollback_id: str,
    event: str,
    attempt: int = 1,
    decision_id: str | None = None,
) -> str | None:
    """`enqueue_chat` when a chat target hears of `event`; the job id, or None. Never
    raises: telling chat must never stand in the way of a rollback or a decision, so a
    failure to enqueue is logged and that message is not sent."""
    if not chat.wants(event):
        return None
    try:
        return enqueue_chat(
            connection,
            rollback_id=rollback_id,
            event=event,
            attempt=attempt,
            decision_id=decision_id,
        )
    except Exception as exc:
        fields = {"rollback_id": rollback_id, "event": event, "error": type(exc).__name__}
        log.warning("chat notice not enqueued", extra={"fields": fields})
        return None


def enqueue_page(connection: redis.Redis, *, decision_id: str, group: str | None = None) -> str:
    """Enqueue `workers.jobs.page` for a decision that needs a human: once per page group
    (the group's first decision), or once per decision without one."""
    kwargs = {"decision_id": decision_id}
    if group is not None:
        kwargs["group"] = group
    return _enqueue_once(
        connection,
        INCIDENTS,
        "workers.jobs.page",
        job_id=page_job_id(decision_id, group),
        kwargs=kwargs,
        retry=INCIDENT_RETRY,
        description=f"page a human about decision {decision_id}"
        + (f" and those like it ({group})" if group else ""),
    )


def schedule_recheck(connection: redis.Redis, *, episode_id: str, at: datetime) -> str:
    """Schedule `workers.jobs.recheck` of a deferred episode at `at` (needs --with-scheduler).

    RQ keeps scheduled times in whole seconds, truncated: a job due at 12:00:00.6 would run
    at 12:00:00, find the episode still too young, and be unable to schedule itself again
    under its own (running) id. So the time is rounded up to the next whole second.
    """
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return _enqueue_once(
        connection,
        DECISIONS,
        "workers.jobs.recheck",
        at=at,
        job_id=recheck_job_id(episode_id),
        kwargs={"episode_id": episode_id},
        retry=RECHECK_RETRY,
        description=f"re-check deferred episode {episode_id}",
    )


def schedule_freeze_review(connection: redis.Redis, at: datetime | None = None) -> str:
    """Schedule `workers.jobs.review_freezes` (workers/freezes.py) for the first whole
    second after `at` (default: now, so within a second); return its job id.

    The id is that second (`freeze_review_job_id`), so every caller asking for the same
    second (rollbacks that froze owners, lifts, the review scheduling its successor on its
    interval's grid) collapses into one pending review. Always a second still to come: a
    review due now may already be running under that second's id, and a second job under
    a known id is never made, so it would otherwise be lost (RQ keeps whole seconds).
    """
    at = at or datetime.now(UTC)
    due = datetime.fromtimestamp(math.floor(at.timestamp()) + 1, UTC)
    return _enqueue_once(
        connection,
        DECISIONS,
        "workers.jobs.review_freezes",
        at=due,
        job_id=freeze_review_job_id(due),
        kwargs={},
        retry=FREEZE_REVIEW_RETRY,
        timeout=FREEZE_REVIEW_TIMEOUT,
        result_ttl=FREEZE_REVIEW_RESULT_TTL,
        description="review frozen owners: lift requests, expiries, sources moved past",
    )


def enqueue_candidate_judgment(connection: redis.Redis, *, episode_id: str) -> str:
    """Enqueue `workers.jobs.judge_candidates`: judge each rollout that could explain the
    episode, then decide again (core/decisions.py `candidates_judged`)."""
    return _enqueue_once(
        connection,
        DECISIONS,
        "workers.jobs.judge_candidates",
        job_id=candidates_job_id(episode_id),
        kwargs={"episode_id": episode_id},
        retry=CANDIDATES_RETRY,
        description=f"judge the candidate rollouts of episode {episode_id}",
    )


def schedule_quarantine_review(connection: redis.Redis, at: datetime) -> str:
    """Schedule `workers.jobs.review_quarantines` (workers/quarantines.py) at the whole
    second `at` (callers pick it on their interval's grid, so concurrent schedulers collapse
    into one job); return its job id."""
    due = datetime.fromtimestamp(math.ceil(at.timestamp()), UTC)
    return _enqueue_once(
        connection,
        DECISIONS,
        "workers.jobs.review_quarantines",
        at=due,
        job_id=f"quarantine-review-{int(due.timestamp())}",
        kwargs={},
        retry=FREEZE_REVIEW_RETRY,
        result_ttl=FREEZE_REVIEW_RESULT_TTL,
        description="review quarantines: issues done in Jira, expiries",
    )


def retry_rollback(connection: redis.Redis, request: RollbackRequest) -> str:
    """Run a finished rollback job again under the same id (a human asked for it)."""
    job = queue(connection, ROLLBACKS).fetch_job(request.id)
    if job is not None:
        job.delete()  # a finished or failed job keeps its id until its TTL; make room
    return _enqueue_once(
        connection,
        ROLLBACKS,
        "workers.jobs.rollback",
        job_id=request.id,
        kwargs=request.job_kwargs(),
        timeout=ROLLBACK_TIMEOUT,
        retry=ROLLBACK_RETRY,
        description=f"retry rollback {request.id}",
    )
