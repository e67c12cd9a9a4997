"""Programs the tests start for real: launch with a log, wait until ready, stop by pid."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def poll(condition: Callable[[], object], *, timeout: float, interval: float = 0.1):
    """Call `condition` until it returns something truthy, and return that; TimeoutError
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s")
        time.sleep(interval)


def launch(
    args: list[str], log: Path, *, env: dict | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `args` in its own session, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def wait_ready(
    process: subprocess.Popen, ready: Callable[[], bool], *, name: str, log: Path, timeout: float
) -> None:
    """Poll `ready` until it holds; stop the process and say where its log is if it never
    does or the process exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            terminate(process)
            raise TimeoutError(f"{name} was not ready within {timeout}s; see {log}")
        time.sleep(0.05)


def terminate(process: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM the process's group, then SIGKILL it if it lingers."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_burst_worker(env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `backstop worker --burst` until the queues are empty (and due jobs are done);
    its output (the worker's JSON log lines are on stderr) comes back. It is also echoed to
    this process's stderr, where pytest captures it and the session's log scan
    (tests/logscan.py) checks it for secrets."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--burst"],
        env=env,
        check=True,
        timeout=timeout,
        capture_output=True,
    )
    for output in (result.stdout, result.stderr):
        sys.stderr.write(output.decode(errors="replace"))
    return result
