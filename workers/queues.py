"""RQ queues and jobs: names, deterministic job ids, enqueueing, and the worker.

Job ids are deterministic and enqueued with `unique=True`, so duplicate deliveries and
concurrent receivers never create two jobs for the same thing. Jobs are referenced by
their import path, so the receiver never imports the job bodies.
"""

import re
from datetime import datetime, timedelta

import redis
from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from workers.models import Workload

ROLLBACKS, DECISIONS, INCIDENTS = "rollbacks", "decisions", "incidents"
# Priority order: a Jira or PagerDuty outage must never delay a revert.
QUEUE_NAMES = (ROLLBACKS, DECISIONS, INCIDENTS)

RESULT_TTL = int(timedelta(days=7).total_seconds())
# RQ keeps failed jobs a year by default; a month is plenty to read and retry them.
FAILURE_TTL = int(timedelta(days=30).total_seconds())
ROLLBACK_TIMEOUT = int(timedelta(minutes=30).total_seconds())
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def queue(connection: redis.Redis, name: str) -> Queue:
    """One of Backstop's queues, with the JSON serializer."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def queues(connection: redis.Redis) -> list[Queue]:
    """Backstop's queues, highest priority first."""
    return [queue(connection, name) for name in QUEUE_NAMES]


def rollback_job_id(workload: Workload, bad_revision: str, *, mode: str = "enforce") -> str:
    """One rollback job per (workload, bad revision): `rollback-<workload hash>-<revision>`.

    A dry run has its own id (`dryrun-...`), so it never blocks a real rollback later.
    """
    prefix = "dryrun" if mode == "dry-run" else "rollback"
    return f"{prefix}-{workload.slug}-{_UNSAFE.sub('_', bad_revision)[:40]}"


def incident_job_id(rollback_id: str, attempt: int = 1) -> str:
    """One incident job per terminal outcome of a rollback (a retried rollback has more)."""
    return f"incident-{rollback_id}-{attempt}"


def page_job_id(decision_id: str) -> str:
    """One page per decision that needs a human although nothing was rolled back."""
    return f"page-{decision_id}"


def recheck_job_id(episode_id: str) -> str:
    """One deferred re-check per episode."""
    return f"recheck-{episode_id}"


def enqueue_rollback(
    connection: redis.Redis,
    *,
    decision_id: str,
    workload: Workload,
    bad_revision: str,
    mode: str = "enforce",
) -> str:
    """Enqueue `workers.jobs.rollback` once per (workload, bad revision); return its id."""
    job_id = rollback_job_id(workload, bad_revision, mode=mode)
    try:
        queue(connection, ROLLBACKS).enqueue_call(
            "workers.jobs.rollback",
            kwargs={
                "decision_id": decision_id,
                "workload": workload.key,
                "bad_revision": bad_revision,
                "mode": mode,
            },
            job_id=job_id,
            unique=True,
            timeout=ROLLBACK_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=3, interval=[10, 30, 60]),
            description=f"roll back {workload.key} from revision {bad_revision}",
        )
    except DuplicateJobError:
        pass  # already enqueued by an earlier delivery: exactly what unique is for
    return job_id


# An outage of Jira or PagerDuty is retried for hours, on its own queue, never in the way of
# a rollback: 20 retries, the last ones 15 minutes apart.
INCIDENT_RETRY = Retry(max=20, interval=[10, 30, 60, 120, 300, 600, 900])


def _enqueue_incident_job(
    connection: redis.Redis, function: str, kwargs: dict, job_id: str, description: str
) -> str:
    try:
        queue(connection, INCIDENTS).enqueue_call(
            function,
            kwargs=kwargs,
            job_id=job_id,
            unique=True,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=INCIDENT_RETRY,
            description=description,
        )
    except DuplicateJobError:
        pass  # this outcome's incident is already on its way
    return job_id


def enqueue_incident(connection: redis.Redis, *, rollback_id: str, attempt: int = 1) -> str:
    """Enqueue `workers.jobs.incident` for a rollback's terminal outcome."""
    return _enqueue_incident_job(
        connection,
        "workers.jobs.incident",
        {"rollback_id": rollback_id},
        incident_job_id(rollback_id, attempt),
        f"file the incident for rollback {rollback_id}",
    )


def enqueue_page(connection: redis.Redis, *, decision_id: str) -> str:
    """Enqueue `workers.jobs.page` for a decision that needs a human."""
    return _enqueue_incident_job(
        connection,
        "workers.jobs.page",
        {"decision_id": decision_id},
        page_job_id(decision_id),
        f"page a human about decision {decision_id}",
    )


def schedule_recheck(connection: redis.Redis, *, episode_id: str, at: datetime) -> str:
    """Schedule `workers.jobs.recheck` of a deferred episode at `at` (needs --with-scheduler)."""
    job_id = recheck_job_id(episode_id)
    try:
        queue(connection, DECISIONS).enqueue_at(
            at,
            "workers.jobs.recheck",
            kwargs={"episode_id": episode_id},
            job_id=job_id,
            unique=True,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=5, interval=[5, 15, 30, 60, 120]),
            description=f"re-check deferred episode {episode_id}",
        )
    except DuplicateJobError:
        pass
    return job_id


def run_worker(connection: redis.Redis, *, burst: bool = False) -> bool:
    """Serve the queues with an RQ worker that also runs the scheduler (for retries)."""
    worker = Worker(queues(connection), connection=connection, serializer=JSONSerializer)
    return worker.work(burst=burst, with_scheduler=True)


def retry_rollback(connection: redis.Redis, rollback_id: str, kwargs: dict) -> str:
    """Run a finished rollback job again under the same id (a human asked for it)."""
    rollbacks = queue(connection, ROLLBACKS)
    job = rollbacks.fetch_job(rollback_id)
    if job is not None:
        job.delete()  # a finished or failed job keeps its id until its TTL; make room
    rollbacks.enqueue_call(
        "workers.jobs.rollback",
        kwargs=kwargs,
        job_id=rollback_id,
        unique=True,
        timeout=ROLLBACK_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=Retry(max=3, interval=[10, 30, 60]),
        description=f"retry rollback {rollback_id}",
    )
    return rollback_id
