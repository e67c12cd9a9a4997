"""The one table of every target in bench/results.json, and the machine it was measured on.

`python -m bench.table` prints it; `make bench` prints it after running every benchmark.
"""

import json
import os
import platform
import sys
import timeit
from pathlib import Path

from bench.results import RESULTS
from receiver import webworker

ORDER = ("P1", "P2", "P2-deferred", "P3", "P4", "P5")


def machine() -> dict:
    """Cores, CPU model and Python of this machine, as docs/benchmarks.md states them."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "speed_us": speed_us(),
        # The machine is shared: its load when measured, beside each number.
        "load_average_1m": round(os.getloadavg()[0], 2),
        # The receiver's server model (BACKSTOP_WEB_WORKER_CLASS, ...; receiver/webworker.py).
        "server": webworker.model(),
    }


def speed_us() -> float:
    """How long this machine's cores take for a fixed piece of Python, in µs (best of 5):
    a JSON round trip of a ten-alert webhook. The absolute targets (P2, P3) move with it:
    on this project's 2-core VMs, P1's bare Flask baseline cost 368 µs of CPU a request in
    one recording and about 1,000 µs in another."""
    alert = {"status": "firing", "labels": {f"label{i}": f"value{i}" for i in range(6)}}
    body = json.dumps({"version": "4", "alerts": [alert] * 10})
    runs = timeit.repeat(lambda: json.dumps(json.loads(body)), number=200, repeat=5)
    return round(min(runs) / 200 * 1e6, 1)


def rows(results: dict) -> list[list[str]]:
    """One row per target: id, what, measured, target, pass; P1..P5 first, then the rest."""
    ids = [i for i in ORDER if i in results] + sorted(set(results) - set(ORDER))
    found = []
    for target_id in ids:
        entry = results[target_id]
        measured = entry.get("measured")
        if isinstance(measured, float):
            measured = f"{measured:g}"
        if entry.get("unit") and measured is not None:
            measured = f"{measured} {entry['unit']}"
        verdict = "PASS" if entry.get("pass") else "FAIL"
        found.append(
            [target_id, entry.get("what", ""), str(measured), entry.get("target", ""), verdict]
        )
    return found


def render(results: dict) -> str:
    """The table as aligned text."""
    header = ["id", "what", "measured", "target", "pass"]
    table = [header, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    info = machine()
    lines.append(
        f"machine: {info['cpus']} cores, {info['cpu_model']}, Python {info['python']}, "
        f"speed {info['speed_us']} µs (bench.table.speed_us; lower is faster)"
    )
    return "\n".join(lines)


def main(path: Path = RESULTS) -> int:
    results = json.loads(path.read_text()) if path.exists() else {}
    print(render(results))
    return 0 if results and all(entry.get("pass") for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
