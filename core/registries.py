"""The RQ side of the job queue as on-call engineers see it: registries, jobs, workers.

Read-only views (counts per queue and registry, pages of jobs, live workers) and the two
actions the dashboard offers: retry a failed job and cancel one that has not started.
A started job is never cancelled from here: stopping a revert half-way is worse than
letting it finish (pause automation instead).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import overload

import redis
from rq import Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus, validate_job_id
from rq.serializers import JSONSerializer

from core.queues import QUEUE_NAMES, queue, queues

REGISTRIES = ("queued", "started", "scheduled", "deferred", "finished", "failed", "canceled")
CANCELLABLE = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
MAX_PAGE = 200


class JobActionError(Exception):
    """A job action that cannot be done; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobView:
    """One job as listed: what it does, where it stands, and how it ended."""

    id: str
    queue: str
    status: str
    description: str
    function: str
    kwargs: dict
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    scheduled_for: datetime | None
    retries_left: int | None
    error: str | None

    def to_json(self) -> dict:
        """The API view."""
        times = ("enqueued_at", "started_at", "ended_at", "scheduled_for")
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in times:
            data[name] = data[name].isoformat() if data[name] else None
        return data


def _registry(connection: redis.Redis, queue_name: str, name: str):
    target = queue(connection, queue_name)
    return {
        "started": target.started_job_registry,
        "scheduled": target.scheduled_job_registry,
        "deferred": target.deferred_job_registry,
        "finished": target.finished_job_registry,
        "failed": target.failed_job_registry,
        "canceled": target.canceled_job_registry,
    }[name]


def counts(connection: redis.Redis) -> dict[str, dict[str, int]]:
    """Jobs per queue and registry: {"rollbacks": {"queued": 0, "started": 1, ...}, ...}."""
    result = {}
    for target in queues(connection):
        row = {"queued": target.count}
        for name in REGISTRIES[1:]:
            # Counting without cleanup: cleaning registries is the workers' job, not a page's.
            row[name] = _registry(connection, target.name, name).get_job_count(cleanup=False)
        result[target.name] = row
    return result


def jobs(
    connection: redis.Redis, *, registry: str, queue_name: str | None = None, limit: int = 50
) -> list[JobView]:
    """Up to `limit` jobs in one registry (of one queue, or all), newest first."""
    limit = min(limit, MAX_PAGE)
    found: list[JobView] = []
    for name in [queue_name] if queue_name else list(QUEUE_NAMES):
        target = queue(connection, name)
        if registry == "queued":
            ids = target.get_job_ids(0, limit)
        else:
            ids = _registry(connection, name, registry).get_job_ids(
                0, limit - 1, desc=True, cleanup=False
            )
        loaded = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
        found += [_view(job, name, registry) for job in loaded if job is not None]
    found.sort(key=_newest_first, reverse=True)
    return found[:limit]


def _newest_first(view: JobView) -> datetime:
    moment = view.ended_at or view.started_at or view.enqueued_at or view.scheduled_for
    return moment or datetime.min.replace(tzinfo=UTC)


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    # RQ stores naive UTC datetimes.
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _view(job: Job, queue_name: str, registry: str) -> JobView:
    scheduled = None
    if registry == "scheduled":
        try:
            scheduled = queue(job.connection, queue_name).scheduled_job_registry.get_scheduled_time(
                job.id
            )
        except NoSuchJobError:
            scheduled = None
    error = None
    if registry == "failed":
        result = job.latest_result()
        error = result.exc_string if result is not None else None
    return JobView(
        id=job.id,
        queue=queue_name,
        status=_text(job.get_status(refresh=False)) or registry,
        description=job.description or "",
        function=job.func_name or "",
        kwargs=dict(job.kwargs or {}),
        enqueued_at=_aware(job.enqueued_at),
        started_at=_aware(job.started_at),
        ended_at=_aware(job.ended_at),
        scheduled_for=_aware(scheduled),
        retries_left=job.retries_left,
        error=error,
    )


def _text(value) -> str:
    """RQ's status enums as their plain values ("failed", not "JobStatus.FAILED")."""
    return str(getattr(value, "value", value) or "")


def _fetch(connection: redis.Redis, job_id: str) -> Job:
    try:
        # An id RQ would refuse to create (any character but letters, digits, _ and -) names
        # no job; without this check RQ raises ValueError on it (a 500 instead of a 404).
        validate_job_id(job_id)
    except ValueError:
        raise JobActionError(404, f"no job {job_id}") from None
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        raise JobActionError(404, f"no job {job_id}") from None


def retry(connection: redis.Redis, job_id: str) -> JobView:
    """Put a failed job back on its queue, under the same id."""
    job = _fetch(connection, job_id)
    if job.get_status() != JobStatus.FAILED:
        status = _text(job.get_status())
        raise JobActionError(409, f"job {job_id} is {status}; only failed jobs can be retried")
    target = queue(connection, job.origin)
    target.failed_job_registry.requeue(job)
    return _view(_fetch(connection, job_id), job.origin, "queued")


def cancel(connection: redis.Redis, job_id: str) -> JobView:
    """Cancel a job that is queued, scheduled or deferred; it will not run."""
    job = _fetch(connection, job_id)
    status = job.get_status()
    if status not in CANCELLABLE:
        allowed = ", ".join(_text(s) for s in CANCELLABLE)
        raise JobActionError(
            409, f"job {job_id} is {_text(status)}; only {allowed} jobs can be cancelled"
        )
    try:
        job.cancel()
    except InvalidJobOperation as exc:
        raise JobActionError(409, str(exc)) from None
    return _view(_fetch(connection, job_id), job.origin, "canceled")


def workers(connection: redis.Redis) -> list[dict]:
    """Live RQ workers: name, state, current job, queues, last heartbeat."""
    found = []
    for worker in Worker.all(connection=connection, serializer=JSONSerializer):
        found.append(
            {
                "name": worker.name,
                "state": _text(worker.get_state()),
                "current_job": worker.get_current_job_id(),
                "queues": worker.queue_names(),
                "last_heartbeat": (
                    _aware(worker.last_heartbeat).isoformat() if worker.last_heartbeat else None
                ),
                "successful_jobs": worker.successful_job_count,
                "failed_jobs": worker.failed_job_count,
            }
        )
    return sorted(found, key=lambda w: w["name"])
