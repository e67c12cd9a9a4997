"""Spare work horses (workers/horses.py): a real fork that waits for its job on a pipe, and
ends when there will be none. The worker's use of them is exercised in
tests/integration/test_worker_policy_reload.py and, under SIGKILL, by R2."""

import json
import os
import time

from tests.conftest import wait_for
from workers.horses import PARENT_CHECK, Spare, Waiting


def exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def recorder(path):
    """A spare's body that writes what it was handed (or "none") to `path`."""

    def serve(waiting: Waiting) -> None:
        path.write_text(json.dumps(waiting.job()))

    return serve


def test_a_spare_takes_the_job_it_is_handed(tmp_path):
    out = tmp_path / "handed"
    spare = Spare.fork(recorder(out), ("policy",))
    assert spare.alive() and spare.inherited == ("policy",)
    assert spare.hand({"job": "rollback-1", "queue": "rollbacks", "execution": "e1"})
    assert exit_code(spare.pid) == 0
    assert json.loads(out.read_text()) == {
        "job": "rollback-1",
        "queue": "rollbacks",
        "execution": "e1",
    }


def test_a_spare_runs_in_its_own_process_group(tmp_path):
    out = tmp_path / "group"

    def serve(waiting: Waiting) -> None:
        out.write_text(str(os.getpgrp()))
        waiting.job()

    spare = Spare.fork(serve, ())
    wait_for(lambda: out.exists() and out.read_text(), timeout=10, message="the spare's group")
    assert int(out.read_text()) == spare.pid  # the worker kills a horse by its group
    spare.discard()
    assert not spare.alive()


def test_a_spare_ends_when_its_pipe_closes_without_a_job(tmp_path):
    out = tmp_path / "handed"
    spare = Spare.fork(recorder(out), ())
    os.close(spare.pipe)  # the worker replaced it, stopped or died
    assert exit_code(spare.pid) == 0
    assert json.loads(out.read_text()) is None


def test_handing_a_job_to_a_spare_that_ended_says_so(tmp_path):
    spare = Spare.fork(lambda waiting: None, ())  # ends at once, reading nothing
    wait_for(lambda: not spare.alive(), timeout=10, message="the spare to end")  # reaped
    assert not spare.hand({"job": "rollback-2", "queue": "rollbacks", "execution": "e2"})
    # Its pipe and its pid are released once: their numbers may be another's by now.
    assert spare.pipe is None and spare.reaped
    spare.discard()
    assert spare.pipe is None and spare.reaped


def test_a_spare_whose_worker_is_gone_waits_no_longer():
    read, write = os.pipe()
    try:
        # Its parent is not the worker that forked it: the worker died, it was adopted.
        waiting = Waiting(read, parent=os.getppid() + 1)
        started = time.monotonic()
        assert waiting.job() is None
        assert time.monotonic() - started < PARENT_CHECK * 5
    finally:
        os.close(read)
        os.close(write)


def test_a_job_may_arrive_in_pieces():
    read, write = os.pipe()
    try:
        os.write(write, b'{"job": "roll')
        os.write(write, b'back-3"}\n')
        assert Waiting(read, parent=os.getppid()).job() == {"job": "rollback-3"}
    finally:
        os.close(read)
        os.close(write)
