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


def rollback_job_id(workload: Workload, bad_revision: str) -> str:
    """One rollback job per (workload, bad revision): `rollback-<workload hash>-<revision>`."""
    return f"rollback-{workload.slug}-{_UNSAFE.sub('_', bad_revision)[:40]}"


def recheck_job_id(episode_id: str) -> str:
    """One deferred re-check per episode."""
    return f"recheck-{episode_id}"


def enqueue_rollback(
    connection: redis.Redis, *, decision_id: str, workload: Workload, bad_revision: str
) -> str:
    """Enqueue `workers.jobs.rollback` once per (workload, bad revision); return its id."""
    job_id = rollback_job_id(workload, bad_revision)
    try:
        queue(connection, ROLLBACKS).enqueue_call(
            "workers.jobs.rollback",
            kwargs={
                "decision_id": decision_id,
                "workload": workload.key,
                "bad_revision": bad_revision,
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
