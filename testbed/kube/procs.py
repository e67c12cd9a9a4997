"""Detached child processes, free loopback ports and deadline-bound waiting for the test stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A part of the test stack could not be built, started or stopped."""


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago (the kernel picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different loopback TCP ports that were free a moment ago. Each stays bound
    until all are picked: a port closed at once may be handed out again by the next bind
    (two of a sentinel group's three once got the same one, and the second never started)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Popen objects of processes this interpreter started: their state is known exactly (no
# /proc races right after exec), and stopping them reaps them so no zombies remain.
_children: dict[int, subprocess.Popen] = {}


def spawn(name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> int:
    """Start argv detached (own session, output to <log_dir>/<name>.log) and return its pid."""
    with open(log_dir / f"{name}.log", "ab") as log:
        # A new session keeps Ctrl-C in the parent's terminal from killing the stack
        # before an orderly stop, and lets `kube-up` return while the stack runs on.
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def is_running(pid: int, program: str) -> bool:
    """Tell whether pid is alive and, if another process started it, still runs `program`."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    # The pid may have been reused by an unrelated process since it was recorded.
    runs_program = any(arg == program or os.path.basename(arg) == program for arg in cmdline)
    return runs_program and state != "Z"


def stop(pid: int, program: str, timeout: float = 10.0) -> None:
    """Stop one process by pid: SIGTERM, wait up to timeout, then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(pid, program):
            break
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            break
        if wait_until(lambda: not is_running(pid, program), timeout, interval=0.05):
            break
    else:
        raise StackError(f"{program} (pid {pid}) survived SIGKILL")
    _children.pop(pid, None)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll condition until it is true (return True) or timeout seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(log_dir: Path, name: str, lines: int = 20) -> str:
    """Return the last lines of a process log, for error messages."""
    try:
        text = (log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
