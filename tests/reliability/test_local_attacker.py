"""R7: a hostile local user can neither use the embedded Redis of `backstop run` (it has a
password, kept in a 0600 file and off every command line, and data files no one else can
read) nor make a worker run anything but Backstop's own jobs, even with write access to
Redis: a job naming another function, a callback, or a pickled payload is refused before
anything it names is imported or any pickle is loaded, and kept in the failed registry
with the reason, while the worker goes on with the next job."""

import os
import stat
import sys
from pathlib import Path

import pytest
import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from cli import main as cli
from cli.localredis import LocalRedis
from core import queues
from testbed.processes import launch, terminate
from tests.conftest import wait_for
from tests.reliability.local_attacker_payload import Unpickled

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = "tests.reliability.local_attacker_payload"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the embedded Redis ------------------------------------------------------------------------


def test_local_redis_answers_only_with_its_password(tmp_path):
    """Any LocalRedis (the test suite's, the benchmarks', `backstop run`'s) has a password;
    it is not on redis-server's command line, which every local user can read."""
    with LocalRedis(tmp_path / "redis", persist=False) as server:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, password="guessed").ping()
        assert redis.Redis.from_url(server.url).ping()
        password = redis.Redis.from_url(server.url).connection_pool.connection_kwargs["password"]
        assert password and len(password) >= 32
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline


def test_backstop_run_keeps_the_password_and_the_data_private(tmp_path):
    """`backstop run`: the password is generated once into var/redis-password (0600), every
    process gets it inside REDIS_URL, and the data directory and its files are the owner's
    alone (0700/0600), also after a restart on the same data."""
    var = tmp_path / "var"
    server = cli.start_local_redis(var)
    try:
        secret = var / "redis-password"
        assert mode(secret) == 0o600
        password = secret.read_text().strip()
        assert server.url == f"redis://:{password}@127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).get("kept")
    finally:
        server.stop()
    server = cli.start_local_redis(var)  # the same password, the same data
    try:
        assert redis.Redis.from_url(server.url).get("kept") == b"yes"
        assert password in server.url
    finally:
        server.stop()
    data = var / "redis"
    assert mode(data) == 0o700
    found = list(data.rglob("*"))
    assert any(path.name.endswith(".aof") for path in found)
    assert (data / "redis.log").exists()
    for path in found:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


# --- the worker runs only Backstop's jobs ------------------------------------------------------


@pytest.fixture
def start_worker(redis_url, tmp_path):
    """Start a real `backstop worker` (with scheduler and spare work horses); it is stopped
    by pid afterwards."""
    config = tmp_path / "policy.yaml"
    config.write_text("mode: dry-run\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env.update(
        {
            "REDIS_URL": redis_url,
            "BACKSTOP_CONFIG": str(config),
            "LOCAL_ATTACKER_MARK": str(tmp_path / "mark"),
        }
    )
    log = tmp_path / "worker.log"
    started = []

    def start():
        process = launch([sys.executable, "-m", "cli.main", "worker"], log, env=env, cwd=ROOT)
        started.append(process)
        return process, log

    yield start
    for process in started:
        terminate(process)


@pytest.fixture
def worker(start_worker):
    return start_worker()


def hostile_jobs(connection: redis.Redis, marks: Path) -> dict[str, str]:
    """Write, as a local user with access to Redis would, jobs that are not Backstop's into
    the rollbacks queue; their ids and what each names."""
    rollbacks = Queue(queues.ROLLBACKS, connection=connection, serializer=JSONSerializer)
    recheck = "workers.jobs.recheck"
    written = {
        "os.system": rollbacks.enqueue_call("os.system", args=(f"touch {marks}/system",)),
        "callback os.system": rollbacks.enqueue_call(
            recheck, kwargs={"episode_id": "e1"}, on_success=Callback("os.system")
        ),
        "failure callback": rollbacks.enqueue_call(
            "os.getcwd", on_failure=Callback(f"{PAYLOAD}.touch")
        ),
        "stopped callback": rollbacks.enqueue_call(
            recheck, kwargs={"episode_id": "e2"}, on_stopped=Callback(f"{PAYLOAD}.touch")
        ),
        "not a job": rollbacks.enqueue_call("workers.worker.run_worker", args=(None,)),
        "hostile module": rollbacks.enqueue_call(f"{PAYLOAD}.touch"),
    }
    # A pickle (RQ's default serializer) whose loading alone would run a command.
    pickled = Queue(queues.ROLLBACKS, connection=connection)
    written["pickle"] = pickled.enqueue_call(recheck, args=(Unpickled(f"{marks}/pickle"),))
    return {name: job.id for name, job in written.items()}


def test_worker_refuses_every_job_that_is_not_backstops(worker, redis_client, tmp_path):
    process, log = worker
    marks = tmp_path / "marks"
    marks.mkdir()
    hostile = hostile_jobs(redis_client, marks)
    # Then a real Backstop job, behind them in the same queue.
    real = queues.queue(redis_client, queues.ROLLBACKS).enqueue_call(
        "workers.jobs.recheck", kwargs={"episode_id": "no-such-episode"}, job_id="recheck-real"
    )

    def status(job_id: str) -> JobStatus | None:
        return Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer).get_status()

    wait_for(lambda: status(real.id) == JobStatus.FINISHED, timeout=90, message="the real job")
    assert process.poll() is None, "the worker stopped"
    failed = FailedJobRegistry(queues.ROLLBACKS, connection=redis_client)
    for name, job_id in hostile.items():
        job = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FAILED, name
        assert job_id in failed, name
        reason = job.latest_result().exc_string
        assert reason.startswith("refused:"), (name, reason)
    assert list(marks.iterdir()) == []  # neither os.system nor the pickle ran
    assert not Path(f"{tmp_path}/mark.imported").exists()  # the payload was never imported
    assert not Path(f"{tmp_path}/mark.ran").exists()
    text = log.read_text()
    assert text.count("job refused") == len(hostile), text
    assert str(marks) not in text  # the jobs' arguments are never logged


def test_an_abandoned_job_never_has_its_failure_callback_imported(
    start_worker, redis_client, tmp_path
):
    """A job written as started by a worker that died (expired in the started registry):
    the worker's registry cleanup fails it, which runs its failure callback, unless it is
    refused like any job that is not Backstop's."""
    rollbacks = Queue(queues.ROLLBACKS, connection=redis_client, serializer=JSONSerializer)
    job = rollbacks.enqueue_call(
        "workers.jobs.recheck", kwargs={"episode_id": "e"}, on_failure=Callback(f"{PAYLOAD}.touch")
    )
    rollbacks.remove(job)
    job.set_status(JobStatus.STARTED)
    started = StartedJobRegistry(queues.ROLLBACKS, connection=redis_client)
    redis_client.zadd(started.key, {f"{job.id}:gone": 1})  # expired long ago
    process, _ = start_worker()

    def state() -> JobStatus:
        return Job.fetch(job.id, connection=redis_client, serializer=JSONSerializer).get_status()

    wait_for(lambda: state() == JobStatus.FAILED, timeout=90, message="the abandoned job failed")
    assert process.poll() is None, "the worker stopped"
    assert not Path(f"{tmp_path}/mark.imported").exists()
    assert not Path(f"{tmp_path}/mark.ran").exists()
