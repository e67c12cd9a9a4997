"""The jobs a Backstop worker runs: its own job functions, and nothing else.

An RQ job names the function it runs (an import path) and may name callbacks the worker
imports and calls; anyone who can write to Redis can write a job. So the worker reads the
function's name from the job's JSON data (never a pickle: Backstop's queues use
JSONSerializer) and refuses a job before anything it names is imported or its arguments
are decoded, when its function is not one of JOB_FUNCTIONS, or when it names a callback,
a webhook or an instance (Backstop's jobs have none). `BackstopJob` is the job class of
the worker and its queues: it also refuses, in the work horse, to import any such name.
"""

import json
import logging
import zlib

import redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.results import Result

log = logging.getLogger("backstop.worker")

# Every function core/queues.py enqueues (workers/jobs.py).
JOB_FUNCTIONS = frozenset(
    {
        "workers.jobs.rollback",
        "workers.jobs.incident",
        "workers.jobs.page",
        "workers.jobs.chat",
        "workers.jobs.recheck",
        "workers.jobs.judge_candidates",
        "workers.jobs.review_freezes",
        "workers.jobs.review_quarantines",
    }
)
# Fields of a job's hash naming what RQ would import or call besides the job's function.
EXTRAS = {
    "success_callback_name": "a success callback",
    "failure_callback_name": "a failure callback",
    "stopped_callback_name": "a stopped callback",
    "webhooks": "webhooks",
}
# How much of a refused name a reason quotes.
QUOTED = 80


class JobRefused(Exception):
    """A job that is not one of Backstop's: the worker never runs it."""


class BackstopJob(Job):
    """RQ's Job, which knows why it must not run (`refusal`) and then imports nothing."""

    refusal: str | None = None

    def restore(self, raw_data) -> None:
        """RQ's restore, deciding first from the raw hash whether the job may run."""
        self.refusal = refusal(raw_data)
        super().restore(raw_data)
        if self.refusal is not None:
            self.webhooks = []  # RQ posts to these when a job ends, even a failed one

    @property
    def func(self):
        """The job's function, imported only for an allowed job."""
        self._refuse_if_refused()
        if self.instance is not None:
            raise JobRefused("refused: a job with an instance")
        return super().func

    @property
    def success_callback(self):
        self._refuse_if_refused()
        return super().success_callback

    @property
    def failure_callback(self):
        self._refuse_if_refused()
        return super().failure_callback

    @property
    def stopped_callback(self):
        self._refuse_if_refused()
        return super().stopped_callback

    def _refuse_if_refused(self) -> None:
        if self.refusal is not None:
            raise JobRefused(self.refusal)


def reject(job: BackstopJob, queue: Queue, *, worker: str, ttl: int) -> None:
    """Move a refused job, never run, to the failed registry with its reason, and log it
    (the reason names what the job asked for; its arguments are never logged)."""
    connection: redis.Redis = queue.connection
    with connection.pipeline() as pipe:
        pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue.key), 1, job.id)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        job.failed_job_registry.add(job, ttl=ttl, exc_string=job.refusal, pipeline=pipe)
        Result.create_failure(job, ttl, exc_string=job.refusal, worker_name=worker, pipeline=pipe)
        pipe.execute()
    log.warning(
        "job refused",
        extra={"fields": {"job_id": job.id, "queue": queue.name, "reason": job.refusal}},
    )


def refusal(raw: dict) -> str | None:
    """Why a job, as its raw Redis hash, must not run; None for one of Backstop's jobs."""
    fields = {_text(name): value for name, value in raw.items()}
    for name, what in EXTRAS.items():
        if fields.get(name):
            return f"refused: the job names {what}"
    function = function_name(fields.get("data") or b"")
    if function is None:
        return "refused: the job's data is not a JSON job (Backstop never uses pickle)"
    if function not in JOB_FUNCTIONS:
        return f"refused: {function[:QUOTED]!r} is not one of Backstop's job functions"
    return None


def function_name(data: bytes) -> str | None:
    """The function a job's JSON data `[function, instance, args, kwargs]` names, read
    without decoding anything after it; None when the data is not of that form."""
    try:
        data = zlib.decompress(data)
    except zlib.error:
        pass  # RQ stores small payloads uncompressed
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return None
    start = len(text) - len(stripped) + 1
    while start < len(text) and text[start].isspace():
        start += 1
    try:
        function, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return function if isinstance(function, str) else None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
