"""P5: peak resident memory of Backstop's processes, sampled from /proc while a bench runs.

Each sample reads VmRSS (resident now) and VmHWM (the kernel's own high-water mark of
resident memory, so peaks between samples are not missed) from /proc/<pid>/status of every
process a role names: the receiver's gunicorn workers, and the RQ workers with the work
horses they fork for each job (short-lived; caught while they run).
"""

import threading
from collections.abc import Callable
from pathlib import Path

from bench.rig import children

KB_PER_MB = 1024


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in kB; empty when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


class MemorySampler:
    """Samples every `interval` seconds in a thread; `peaks()` gives MB per process."""

    def __init__(self, roles: dict[str, Callable[[], list[int]]], interval: float = 0.1):
        self.roles = roles  # role -> the pids to sample now
        self.interval = interval
        self.samples = 0
        self._peak_kb: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # the high-water marks of whatever still runs

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Read every process of every role once."""
        for role, pids in self.roles.items():
            for pid in pids():
                status = status_kb(pid)
                if status:
                    peak = max(status.get("VmRSS", 0), status.get("VmHWM", 0))
                    key = (role, pid)
                    self._peak_kb[key] = max(self._peak_kb.get(key, 0), peak)
        self.samples += 1

    def peaks(self) -> dict[str, dict[int, float]]:
        """Peak resident MB of each process seen, by role and pid."""
        found: dict[str, dict[int, float]] = {role: {} for role in self.roles}
        for (role, pid), kb in sorted(self._peak_kb.items()):
            found[role][pid] = round(kb / KB_PER_MB, 1)
        return found


def with_horses(pids: Callable[[], list[int]]) -> Callable[[], list[int]]:
    """The RQ workers' pids plus those of their work horses running now."""

    def both() -> list[int]:
        parents = pids()
        return [*parents, *(child for pid in parents for child in children(pid))]

    return both
