"""P1: ingest throughput of the receiver against a bare Flask app, same gunicorn, same run.

Run with `make bench-ingest`. Both apps run under gunicorn with Backstop's gunicorn config
and the same worker count; the load comes from `wrk` in a separate process over loopback,
bounded in time. Rounds alternate between the two apps so drift affects both alike.
The target (DESIGN.md §7 P1) is a throughput ratio of at least 0.70.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from bench.results import record
from receiver.localredis import LocalRedis
from testbed.servers import Gunicorn

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
TARGET = 0.70


def wrk(url: str, seconds: int, connections: int) -> dict:
    """One bounded wrk run; returns requests/s, latency percentiles (ms) and errors."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(HERE / "ingest.lua"),
            f"{url}/webhooks/alertmanager",
        ],
        env={**os.environ, "BENCH_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run(rounds: int, seconds: int, connections: int, workers: int) -> dict:
    """Measure both apps in alternating rounds; return the summary."""
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="backstop-bench-"))
    results: dict[str, list[dict]] = {"bare": [], "backstop": []}
    with LocalRedis(work / "redis") as redis_server:
        env = {
            "REDIS_URL": redis_server.url,
            "BACKSTOP_WEBHOOK_TOKEN": TOKEN,
            "BACKSTOP_API_TOKEN": "bench-api-token",
            "BACKSTOP_LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
        }
        (work / "metrics").mkdir()
        apps = {
            "bare": Gunicorn("bench.bare_app:create_app()", env, workers=workers),
            "backstop": Gunicorn("receiver.app:create_app()", env, workers=workers),
        }
        for server in apps.values():
            server.start()
        try:
            for server in apps.values():  # warm-up: imports, connections, Lua script load
                wrk(server.url, 2, connections)
            for _ in range(rounds):
                for name, server in apps.items():
                    results[name].append(wrk(server.url, seconds, connections))
        finally:
            for server in apps.values():
                server.stop()
    shutil.rmtree(work, ignore_errors=True)
    summary = {name: _summarize(runs) for name, runs in results.items()}
    ratio = summary["backstop"]["rps"] / summary["bare"]["rps"]
    return {
        "id": "P1",
        "what": "ingest throughput, receiver / bare Flask, 10 alerts per webhook",
        "measured": round(ratio, 3),
        "target": f">= {TARGET}",
        "pass": ratio >= TARGET and summary["backstop"]["errors"] == 0,
        "apps": summary,
        "settings": {
            "rounds": rounds,
            "seconds": seconds,
            "connections": connections,
            "gunicorn_workers": workers,
            "cpus": os.cpu_count(),
        },
    }


def _summarize(runs: list[dict]) -> dict:
    return {
        "rps": round(median(r["rps"] for r in runs), 1),
        "p50_ms": round(median(r["p50_ms"] for r in runs), 2),
        "p99_ms": round(median(r["p99_ms"] for r in runs), 2),
        "errors": sum(r["errors"] for r in runs),
    }


def main() -> int:
    """Run the benchmark, print a table, record the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    result = run(args.rounds, args.seconds, args.connections, args.workers)
    print(f"{'app':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, row in result["apps"].items():
        print(
            f"{name:<10} {row['rps']:>9.1f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['errors']:>7}"
        )
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"P1 ratio {result['measured']:.3f} (target {result['target']}): {verdict}")
    record(result, HERE / "results.json")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
