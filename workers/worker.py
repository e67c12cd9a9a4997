"""The worker process: an RQ worker that prepares what its work horses inherit."""

import logging
import math
import os
import time

import redis
from redis.driver_info import resolve_driver_info
from rq import Worker
from rq.executions import Execution
from rq.serializers import JSONSerializer

import workers.jobs  # noqa: F401  (loaded once in the worker, so no work horse imports it)
from core.integrations.kubeconfig import (
    CONFIGURATION_MAX_AGE,
    load_api_classes,
    warm_validators,
)
from core.judgment import load_statistics
from core.queues import FAILURE_TTL, queues
from core.store.decisions import DecisionStore
from workers.allowlist import BackstopJob, reject
from workers.context import prepare_worker, refresh_prepared, same_prepared, warm_horse
from workers.horses import SPARE_MAX_AGE, Spare, Waiting

log = logging.getLogger("backstop.worker")


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
        spare, self._spare = self._spare, None
        if spare is not None:
            execution = self.execution
            assert execution is not None  # RQ's execute_job prepares it before forking
            if same_prepared(spare.inherited, self._inherits) and spare.hand(
                {"job": job.id, "queue": queue.name, "execution": execution.id}
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


def _upgrade_store(connection: redis.Redis) -> None:
    """Bring a store written by an earlier Backstop up to date (indexes it lacks) before
    serving jobs. With Redis down, the first job that needs an index builds it."""
    try:
        indexed = DecisionStore(connection).ensure_workload_index()
    except redis.RedisError as exc:
        log.warning("store not upgraded at start: %s", type(exc).__name__)
        return
    if indexed:
        log.info("indexed %d stored decisions by workload", indexed)


def preload_job_code(connection: redis.Redis) -> None:
    """Do once, in the worker, what every work horse (forked per job) would otherwise do
    before a rollback's first step (bench/latency.py): import the job bodies, the
    Kubernetes API classes (0.6-1.2 s) and scipy's test (core/judgment.py), build the
    client's argument validators (about 1.3 ms per method a rollback calls), resolve the
    Redis client's name and version, read the settings and parse the policy and
    kubeconfigs (workers.context.prepare_worker, refreshed before each fork, so that a
    changed policy applies to the next job)."""
    load_api_classes()
    load_statistics()
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
