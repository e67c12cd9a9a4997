"""RQ queues and jobs: names, deterministic job ids, enqueueing, and the worker.

Job ids are deterministic and enqueued with `unique=True`, so duplicate deliveries and
concurrent receivers never create two jobs for the same thing. Jobs are referenced by
their import path, so the receiver never imports the job bodies.
"""

import logging
import math
import os
import re
import time
from datetime import datetime, timedelta

import redis
from redis.driver_info import resolve_driver_info
from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from core import logs
from core.models import Workload
from workers.allowlist import BackstopJob, reject
from workers.horses import SPARE_MAX_AGE, Spare, Waiting

log = logging.getLogger("backstop.worker")

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


def incident_job_id(rollback_id: str, attempt: int = 1) -> str:
    """One incident job per terminal outcome of a rollback (a retried rollback has more)."""
    return f"incident-{rollback_id}-{attempt}"


def page_job_id(decision_id: str, group: str | None = None) -> str:
    """One page per page group (core/paging.py); without one, per decision."""
    return f"page-{group or decision_id}"


def recheck_job_id(episode_id: str) -> str:
    """One deferred re-check per episode."""
    return f"recheck-{episode_id}"


# A rollback is retried three times over a minute and a half (transient API errors); an
# outage of Jira or PagerDuty for hours (20 retries, the last ones 15 minutes apart), on its
# own queue, never in a rollback's way.
ROLLBACK_RETRY = Retry(max=3, interval=[10, 30, 60])
INCIDENT_RETRY = Retry(max=20, interval=[10, 30, 60, 120, 300, 600, 900])
RECHECK_RETRY = Retry(max=5, interval=[5, 15, 30, 60, 120])


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


def enqueue_rollback(
    connection: redis.Redis,
    *,
    decision_id: str,
    workload: Workload,
    bad_revision: str,
    mode: str = "enforce",
) -> str:
    """Enqueue `workers.jobs.rollback` once per (workload, bad revision); return its id."""
    return _enqueue_once(
        connection,
        ROLLBACKS,
        "workers.jobs.rollback",
        job_id=rollback_job_id(workload, bad_revision, mode=mode),
        kwargs={
            "decision_id": decision_id,
            "workload": workload.key,
            "bad_revision": bad_revision,
            "mode": mode,
        },
        timeout=ROLLBACK_TIMEOUT,
        retry=ROLLBACK_RETRY,
        description=f"roll back {workload.key} from revision {bad_revision}",
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


def run_worker(connection: redis.Redis, *, burst: bool = False) -> bool:
    """Serve the queues with an RQ worker that also runs the scheduler (for retries)."""
    preload_job_code(connection)
    _upgrade_store(connection)
    # The worker's queues, too, fetch jobs as BackstopJob: cleaning their registries runs
    # the failure callback of a job found abandoned.
    worker = PreparedWorker(
        queues(connection, job_class=BackstopJob),
        connection=connection,
        serializer=JSONSerializer,  # never pickle: loading one can run anything
        job_class=BackstopJob,
        # A job's description is whoever wrote it: log ids (Backstop's say what they are).
        log_job_description=False,
    )
    return worker.work(burst=burst, with_scheduler=True)


class PreparedWorker(Worker):
    """RQ's forking worker (a work horse per job, watched by the worker, which notices one
    that dies), which brings what its horses inherit up to date before each fork, and
    keeps a spare horse ready while idle (workers.horses): a job goes to the spare when it
    inherited what the worker holds now, else to a horse forked for it as RQ does.

    Waiting for a job is done in slices of SPARE_MAX_AGE; each slice starts with a fresh
    spare, forked after the worker read its policy and kubeconfigs again, taking a
    kubeconfig older than CONFIGURATION_MAX_AGE - SPARE_MAX_AGE as aged. So what the spare
    inherited is still current when the job comes, and it takes the job.
    """

    _spare: Spare | None = None
    _inherits: tuple = ()

    def execute_job(self, job, queue):
        """Refuse a job that is not Backstop's (workers.allowlist); else refresh the prepared
        policy and kubeconfigs, then run `job` in a horse as RQ does (the spare, if it
        inherited the same)."""
        from workers.context import refresh_prepared

        if getattr(job, "refusal", None) is not None:
            reject(job, queue, worker=self.name, ttl=FAILURE_TTL)
            return
        self._inherits = refresh_prepared()
        return super().execute_job(job, queue)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """RQ's wait for a job, in slices of SPARE_MAX_AGE, each with a fresh spare ready.
        A burst worker (no wait) keeps none."""
        if timeout is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        started = time.monotonic()
        while True:
            self._renew_spare()
            left = SPARE_MAX_AGE
            if max_idle_time is not None:
                left = min(left, max_idle_time - (time.monotonic() - started))
                if left <= 0:
                    return None
            result = super().dequeue_job_and_maintain_ttl(timeout, max(1, math.ceil(left)))
            if result is not None:
                return result

    def fork_work_horse(self, job, queue):
        """Hand `job` to the spare if it inherited what the worker holds now, else fork."""
        from workers.context import same_prepared

        spare, self._spare = self._spare, None
        if spare is not None:
            if same_prepared(spare.inherited, self._inherits) and spare.hand(
                {"job": job.id, "queue": queue.name, "execution": self.execution.id}
            ):
                os.environ["RQ_WORKER_ID"], os.environ["RQ_JOB_ID"] = self.name, job.id
                self._horse_pid = spare.pid
                self.procline(f"Handed to spare {spare.pid} at {time.time()}")
                log.info("job %s handed to spare work horse %s", job.id, spare.pid)
                return
            spare.discard()
        super().fork_work_horse(job, queue)

    def teardown(self):
        """RQ's teardown; the spare, if any, ends first."""
        if self._spare is not None and not self.is_horse:
            self._spare.discard()
            self._spare = None
        super().teardown()

    def _renew_spare(self) -> None:
        """Fork a spare, replacing one that is older than half a slice or gone."""
        from core.integrations.kubernetes import CONFIGURATION_MAX_AGE
        from workers.context import refresh_prepared

        spare = self._spare
        if spare is not None:
            if spare.age() < SPARE_MAX_AGE / 2 and spare.alive():
                return
            self._spare = None
            spare.discard()
        inherits = refresh_prepared(max_age=CONFIGURATION_MAX_AGE - SPARE_MAX_AGE)
        try:
            self._spare = Spare.fork(self._serve_spare, inherits)
        except OSError as exc:  # no fork now (out of processes or memory): jobs fork as before
            log.warning("no spare work horse: %s", exc)

    def _serve_spare(self, waiting: Waiting) -> None:
        """In the spare: warm up, wait for the job, then be its work horse."""
        from rq.executions import Execution

        from workers.context import warm_horse

        warm_horse()
        handed = waiting.job()
        if handed is None:
            os._exit(0)
        job = self.job_class.fetch(
            handed["job"], connection=self.connection, serializer=self.serializer
        )
        queue = self.queue_class(
            handed["queue"],
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        execution = Execution.fetch(handed["execution"], job.id, connection=self.connection)
        # What the worker's prepare_execution recorded, as a fork would have inherited it.
        self.executions = {execution.id: execution}
        os.environ["RQ_WORKER_ID"], os.environ["RQ_JOB_ID"] = self.name, job.id
        self.main_work_horse(job, queue)


# The Kubernetes client loads each API class's module on first use (about 0.3 s apiece).
KUBE_API_CLASSES = ("AppsV1Api", "CoreV1Api", "CustomObjectsApi", "BatchV1Api")


def _upgrade_store(connection: redis.Redis) -> None:
    """Bring a store written by an earlier Backstop up to date (indexes it lacks) before
    serving jobs. With Redis down, the first job that needs an index builds it."""
    from core.store.decisions import DecisionStore

    try:
        indexed = DecisionStore(connection).ensure_workload_index()
    except redis.RedisError as exc:
        log.warning("store not upgraded at start: %s", type(exc).__name__)
        return
    if indexed:
        log.info("indexed %d stored decisions by workload", indexed)


def preload_job_code(connection: redis.Redis) -> None:
    """Do once, in the worker, what every work horse (forked per job) would otherwise do
    before a rollback's first step (bench/latency.py): import the job bodies and the
    Kubernetes API classes (0.6-1.2 s), build the client's argument validators (about 1.3 ms
    per method a rollback calls), resolve the Redis client's name and version, read the
    settings and parse the policy and kubeconfigs (workers.context.prepare_worker, refreshed
    before each fork, so that a changed policy applies to the next job)."""
    from kubernetes import client

    import workers.jobs  # noqa: F401  (imported for its side effect: the modules it loads)
    from core.integrations.kubernetes import warm_validators
    from workers.context import prepare_worker

    for name in KUBE_API_CLASSES:
        getattr(client, name)
    warm_validators()
    _driver_info_once(connection)
    prepare_worker(connection)


def _driver_info_once(connection: redis.Redis) -> None:
    """Resolve what every new connection of the worker's client sends with CLIENT SETINFO
    (the library's name and version) once: redis-py otherwise looks its own version up in
    the installed packages' metadata for each connection, 0.5-2 ms in a work horse, which
    opens a fresh one for every job. The same values, computed once."""
    options = connection.connection_pool.connection_kwargs
    if not {"driver_info", "lib_name", "lib_version"} & options.keys():
        options["driver_info"] = resolve_driver_info()


def retry_rollback(connection: redis.Redis, rollback_id: str, kwargs: dict) -> str:
    """Run a finished rollback job again under the same id (a human asked for it)."""
    job = queue(connection, ROLLBACKS).fetch_job(rollback_id)
    if job is not None:
        job.delete()  # a finished or failed job keeps its id until its TTL; make room
    return _enqueue_once(
        connection,
        ROLLBACKS,
        "workers.jobs.rollback",
        job_id=rollback_id,
        kwargs=kwargs,
        timeout=ROLLBACK_TIMEOUT,
        retry=ROLLBACK_RETRY,
        description=f"retry rollback {rollback_id}",
    )
