"""Spare work horses: forked while the worker is idle, handed a job when one comes.

RQ runs each job in a work horse forked for it, and the worker watches the horse: one that
dies (R2's SIGKILL) is noticed, and its job retried. A fresh fork pays, before its job's
first step, for the fork, for a copy-on-write fault on each page it writes, for its own
Redis connection and for the TLS handshake with the API server: a third of the time from
webhook to PATCH with an idle worker (bench/latency.py). A spare pays for them before the
job exists: the worker forks it while idle, and the spare opens its connections and waits
on a pipe. When a job comes, the worker writes the job's id to the pipe and watches the
spare as its horse, as it would a fresh fork: its own child, in its own process group.

A spare lives only while the worker does: it exits when its pipe closes (the worker
replaced it, stopped, or died) or when its parent is no longer the worker that forked it.
"""

import gc
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("backstop.worker")

# A spare is replaced by a fresh one (forked after the worker read its policy and
# kubeconfigs again) at least this often while the worker waits for a job.
SPARE_MAX_AGE = 25.0
# How often a waiting spare checks that the worker that forked it is still its parent.
PARENT_CHECK = 1.0
# A job's hand-over: one line of JSON, far below PIPE_BUF, so one write delivers it whole.
MAX_MESSAGE = 4096


@dataclass
class Spare:
    """A spare work horse, as its worker sees it: the child and the pipe's writing end.

    Each is released once: the pipe closed at most once (its number may belong to another
    file afterwards), and the child signalled only until it is reaped (its pid may then
    belong to another process)."""

    pid: int
    pipe: int | None
    # What the spare inherited (the prepared policy and kubeconfigs): it may take a job only
    # while the worker holds the very same.
    inherited: tuple
    born: float
    reaped: bool = False

    @classmethod
    def fork(cls, serve: Callable[["Waiting"], None], inherited: tuple) -> "Spare":
        """Fork a spare that runs `serve` (which never returns: it ends in os._exit)."""
        read, write = os.pipe()
        parent = os.getpid()
        # What the worker holds is the spare's too: frozen out of the collector, so the
        # spare's collections never walk it (a pause in the job) nor write its pages.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the spare
            os.close(write)
            try:
                os.setpgrp()  # as RQ's horse: the worker kills its process group
                # Until a job makes it a horse: killed means gone, and Ctrl+C is the worker's.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                serve(Waiting(read, parent))
            except BaseException:
                log.exception("spare work horse failed")
                os._exit(1)
            os._exit(0)
        os.close(read)
        return cls(pid, write, inherited, time.monotonic())

    def age(self) -> float:
        return time.monotonic() - self.born

    def alive(self) -> bool:
        """True while the spare runs (one that ended is reaped here)."""
        if not self.reaped:
            self._reap(os.WNOHANG)
        return not self.reaped

    def hand(self, message: dict) -> bool:
        """Give the spare its job; False (and reaped) when it was gone. Either way the
        worker's end of the pipe is closed: a spare that took its job is the worker's horse,
        watched as RQ watches one."""
        assert self.pipe is not None  # the worker hands a spare a job once, its pipe open
        data = (json.dumps(message) + "\n").encode()
        try:
            os.write(self.pipe, data)
        except OSError:  # EPIPE: the spare had ended
            self.discard()
            return False
        finally:
            self._close_pipe()
        return True

    def discard(self) -> None:
        """End the spare and reap it (nothing, when that was done already)."""
        self._close_pipe()
        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(0)

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            _close(self.pipe)
            self.pipe = None

    def _reap(self, options: int) -> None:
        try:
            pid, _ = os.waitpid(self.pid, options)
        except ChildProcessError:
            pid = self.pid
        self.reaped = pid != 0


@dataclass
class Waiting:
    """The spare's end: the pipe's reading end, and the worker that forked it."""

    pipe: int
    parent: int

    def job(self) -> dict | None:
        """The job the worker hands over, or None when there will be none (the pipe closed,
        or the worker is gone)."""
        data = b""
        while b"\n" not in data:
            ready, _, _ = select.select([self.pipe], [], [], PARENT_CHECK)
            if not ready:
                if os.getppid() != self.parent:
                    return None
                continue
            chunk = os.read(self.pipe, MAX_MESSAGE)
            if not chunk:
                return None
            data += chunk
        return json.loads(data.split(b"\n", 1)[0])


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
