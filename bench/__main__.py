"""`python -m bench` (`make bench`): every target benchmark in turn, then one table.

P1 (bench.ingest) and P1-distinct (no body a byte-for-byte repeat), P2 and P5 (bench.storm),
P2-deferred (the same storm with the rollbacks after it), P3 (bench.latency), P3-store (the
same with 20,000 other decisions stored), P3-judged (bench.judged: P3 with a judgment, beside
P3 without one in the same run), and P4 (bench.gameday,
summarizing var/gameday-report.json when a game day already wrote it, else playing one),
and P8 (bench.safestate: the canary scenario with production's alerting windows).
P6 (bench.watcher): the deployment watcher at 5,000 Deployments, its memory, relist and lag.
P1-fresh (bench.ingest --fresh-alerts: every alert a new episode) and P7 (bench.store: the
store's footprint in Redis at its caps, and latency with the store full against empty).
P1-peer and P1-peer-repeat (bench.peer: the same load against alerta-server on PostgreSQL;
it needs only Debian's postgresql and PyPI, which it installs into var/peer-venv itself).
Each runs in its own process and records its entry in bench/results.json; a failed target
does not stop the others. The exit status is 0 only when every target passed.
"""

import subprocess
import sys
from pathlib import Path

from bench import table

ROOT = Path(__file__).resolve().parent.parent
GAMEDAY_REPORT = ROOT / "var" / "gameday-report.json"


def commands() -> list[list[str]]:
    """The benchmarks to run, in order."""
    gameday = ["bench.gameday"]
    if GAMEDAY_REPORT.exists():
        gameday += ["--from-report", str(GAMEDAY_REPORT)]
    return [
        ["bench.ingest"],
        ["bench.ingest", "--distinct-bodies"],
        ["bench.ingest", "--fresh-alerts"],
        ["bench.peer"],
        ["bench.storm"],
        ["bench.storm", "--min-firing", "8s"],
        ["bench.latency"],
        ["bench.latency", "--stored-decisions", "20000"],
        ["bench.judged"],
        gameday,
        ["bench.safestate"],
        ["bench.watcher"],
        ["bench.store"],
    ]


def main() -> int:
    for command in commands():
        print(f"== python -m {' '.join(command)}", flush=True)
        done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, check=False)
        if done.returncode:
            print(f"== {command[0]} exited with {done.returncode}", flush=True)
    print()
    return table.main()


if __name__ == "__main__":
    sys.exit(main())
