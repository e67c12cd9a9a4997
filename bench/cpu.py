"""Where a benchmark's CPU went: CPU seconds per program, from /proc, over a stretch of time.

Every process on the machine is read before and after (user + system time, plus the time of
children it reaped, so a work horse that ran and exited counts for its RQ worker). The
difference is grouped by program name, which shows who shares the cores with the code
under test: the load generator, Redis, the Kubernetes control plane, other jobs.
"""

import os
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _label(pid: str, comm: str) -> str:
    """A program's name: the executable, or for Python the module it runs (`-m x y`)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return comm
    args = [arg.decode(errors="replace") for arg in args if arg]
    if not args:
        return comm  # a kernel thread
    program = os.path.basename(args[0].split()[0])  # some rewrite argv into one string
    if program.startswith("python") and "-m" in args[:-1]:
        module = args.index("-m") + 1
        return " ".join(args[module : module + 2])[:40]
    if program.startswith("python") and len(args) > 1:
        return os.path.basename(args[1])  # a script, e.g. gunicorn's
    return program


def _stat(pid: str) -> tuple[str, int] | None:
    """(program name, CPU ticks of the process and its reaped children), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = _label(pid, text[text.index("(") + 1 : text.rindex(")")])
    fields = text[text.rindex(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] here is field 3.
    return name, sum(int(value) for value in fields[11:15])


def snapshot() -> dict[str, tuple[str, int]]:
    """pid -> (program name, CPU ticks so far) for every process now."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None:
                found[entry] = stat
    return found


def by_program(before: dict, after: dict, seconds: float) -> dict[str, float]:
    """Share of one core (1.0 = a whole core) each program used between two snapshots,
    largest first. A process that exited in between is missed unless its parent reaped it."""
    used: Counter = Counter()
    for pid, (name, ticks) in after.items():
        start = before.get(pid)
        earlier = start[1] if start is not None and start[0] == name else 0
        used[name] += ticks - earlier
    scale = 1 / (TICKS * seconds) if seconds > 0 else 0.0
    return {name: round(ticks * scale, 3) for name, ticks in used.most_common() if ticks > 0}
