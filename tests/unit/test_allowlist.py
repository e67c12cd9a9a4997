"""workers.allowlist: which jobs a worker may run, read from the job's raw hash without
importing or decoding anything else (the worker itself: tests/reliability/
test_local_attacker.py)."""

import json
import pickle
import zlib

import pytest
from rq import Callback, Queue
from rq.serializers import JSONSerializer

from core import queues
from workers.allowlist import JOB_FUNCTIONS, BackstopJob, JobRefused, function_name, refusal


def test_the_allowlist_is_every_function_backstop_enqueues():
    import workers.jobs

    assert {name.rpartition(".")[2] for name in JOB_FUNCTIONS} == {
        "rollback",
        "incident",
        "page",
        "chat",
        "recheck",
        "judge_candidates",
        "review_freezes",
        "review_quarantines",
    }
    for name in JOB_FUNCTIONS:
        assert callable(getattr(workers.jobs, name.rpartition(".")[2]))


@pytest.mark.parametrize(
    "data, name",
    [
        (b'["workers.jobs.page", null, [], {"decision_id": "d"}]', "workers.jobs.page"),
        (b' [ "os.system" , null, ["x"], {}]', "os.system"),
        (zlib.compress(b'["workers.jobs.rollback", null, [], {}]'), "workers.jobs.rollback"),
        (pickle.dumps(("workers.jobs.page", None, (), {})), None),
        (b'{"function": "workers.jobs.page"}', None),
        (b"[1, null, [], {}]", None),
        (b'["unterminated', None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_the_function_is_read_from_json_data_only(data, name):
    assert function_name(data) == name


def test_the_function_name_is_read_before_the_arguments():
    """Arguments that are not even valid JSON are never decoded to find the function."""
    assert function_name(b'["workers.jobs.page", null, [not json at all') == "workers.jobs.page"


def raw(function: str, **fields) -> dict:
    data = json.dumps([function, None, [], {}]).encode()
    return {b"data": zlib.compress(data), **{k.encode(): v for k, v in fields.items()}}


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({}, None),
        ({"success_callback_name": b"os.system"}, "refused: the job names a success callback"),
        ({"failure_callback_name": b"x.y"}, "refused: the job names a failure callback"),
        ({"stopped_callback_name": b"x.y"}, "refused: the job names a stopped callback"),
        ({"webhooks": b'[{"url": "http://x"}]'}, "refused: the job names webhooks"),
    ],
)
def test_a_backstop_job_with_anything_more_is_refused(fields, reason):
    assert refusal(raw("workers.jobs.page", **fields)) == reason


def test_another_function_is_refused_and_quoted_briefly():
    assert (
        refusal(raw("os.system")) == "refused: 'os.system' is not one of Backstop's job functions"
    )
    reason = refusal(raw("a" * 500))
    assert len(reason) < 150


def test_in_the_work_horse_a_refused_job_imports_nothing(redis_client):
    """Even past the worker's check, a refused job's function and callbacks are never
    imported (a module that does not exist would raise ImportError, not JobRefused)."""
    attacker = Queue("rollbacks", connection=redis_client, serializer=JSONSerializer)
    job = attacker.enqueue_call(
        "tests.no_such_module.run", on_failure=Callback("tests.no_such_module.callback")
    )
    fetched = BackstopJob.fetch(job.id, connection=redis_client, serializer=JSONSerializer)
    assert fetched.refusal.startswith("refused:")
    for attribute in ("func", "success_callback", "failure_callback", "stopped_callback"):
        with pytest.raises(JobRefused):
            getattr(fetched, attribute)


def test_backstops_own_jobs_run(redis_client):
    job = queues.queue(redis_client, queues.DECISIONS).enqueue_call(
        "workers.jobs.recheck", kwargs={"episode_id": "e"}
    )
    fetched = BackstopJob.fetch(job.id, connection=redis_client, serializer=JSONSerializer)
    assert fetched.refusal is None
    from workers.jobs import recheck

    assert fetched.func is recheck
    assert fetched.success_callback is None and fetched.failure_callback is None
