"""P1-peer: Backstop's ingest against alerta-server, the peer users would pick for alert
ingest, with P1's bodies and load (bench/ingest.py), rounds interleaved in one run.

Run with `make bench-peer`; docs/benchmarks.md ("Against alerta") has the setup, the
numbers and the comparison's uneven points. Three apps, each under gunicorn with the same
worker and thread counts: Backstop's receiver on Redis; alerta-server (pinned below, in
var/peer-venv) on a throwaway PostgreSQL (bench/postgres.py) as it ships; alerta tuned
(`synchronous_commit = off`, forwarder plugin off). Two modes: fresh (every alert new) and
repeat (4,000 alerts cycling). Bodies carry an `instance` label per alert (ingest.lua's
BENCH_INSTANCE): alerta keys alerts by environment, `instance` and `alertname`, and would
otherwise see one alert. Goal: Backstop at least 5 times tuned alerta on fresh alerts. Only 2xx
answers count, and every accepted alert must be found stored afterwards, so an app
answering errors fast, or storing nothing, cannot look fast.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from bench import ingest
from bench.ingest import TOKEN, cpu_seconds, cpu_total, workers_of, wrk
from bench.postgres import LocalPostgres, postgres_cpu, postgres_version
from bench.results import record
from bench.table import machine
from cli.localredis import LocalRedis
from core.store import keys
from receiver import webworker
from testbed.kube.procs import free_port
from testbed.processes import launch, terminate, wait_ready
from testbed.servers import Gunicorn

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
PEER_VENV = ROOT / "var" / "peer-venv"
LOGS = ROOT / "var" / "bench-peer"
# The peer, pinned: what was measured is what a later run installs.
PINS = ("alerta-server==9.1.0", "gunicorn==27.0.1", "psycopg2-binary==2.9.13")
TARGET = 5.0
ALERTS_PER_WEBHOOK = 10  # bench/ingest.lua
APPS = ("backstop", "alerta", "alerta-tuned")
MODES = ("fresh", "repeat")
IDS = {"fresh": "P1-peer", "repeat": "P1-peer-repeat"}
# alerta's defaults (alerta/settings.py); tuned drops the forwarder, which runs on every alert.
STOCK_PLUGINS = "remote_ip,reject,heartbeat,blackout,forwarder"
TUNED_PLUGINS = "remote_ip,reject,heartbeat,blackout"
LUA_ENV = {"BENCH_INSTANCE": "1"}
# alerta runs as it ships, without authentication (AUTH_REQUIRED = False): it is sent no
# Authorization header, which it would take for a token to check and refuse.
ALERTA_LUA_ENV = {**LUA_ENV, "BENCH_TOKEN": ""}


def ensure_peer_venv() -> Path:
    """var/peer-venv with the pinned peer installed (once; again when PINS change)."""
    stamp = PEER_VENV / ".bench-pins"
    if stamp.exists() and stamp.read_text().split() == list(PINS):
        return PEER_VENV
    print(f"installing {' '.join(PINS)} into {PEER_VENV}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    pip = [str(PEER_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *PINS], check=True)
    stamp.write_text("\n".join(PINS) + "\n")
    return PEER_VENV


class Alerta:
    """alerta-server under the peer venv's gunicorn on a free loopback port, its database
    schema created before the workers start (each worker would otherwise race to)."""

    def __init__(self, name: str, database_url: str, plugins: str, workers: int, threads: int):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.threads = threads
        self.log = LOGS / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")},
            "HOME": str(LOGS),
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(24),
            "PLUGINS": plugins,
            "AUTH_REQUIRED": "False",  # alerta's default
            "LOG_LEVEL": "WARNING",  # alerta's default
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "Alerta":
        """Create the schema, start gunicorn, wait until alerta answers."""
        python = PEER_VENV / "bin" / "python"
        with self.log.open("ab") as log:
            subprocess.run(
                [str(python), "-c", "from alerta import create_app; create_app()"],
                env=self.env,
                cwd=LOGS,
                stdout=log,
                stderr=log,
                check=True,
            )
        args = [str(PEER_VENV / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}"]
        # Backstop's receiver model in counts: the same workers, each with the same threads,
        # HTTP keep-alive as Backstop's (5 s), no control socket.
        args += ["--workers", str(self.workers), "--worker-class", "gthread"]
        args += ["--threads", str(self.threads), "--keep-alive", "5", "--no-control-socket"]
        self.process = launch([*args, "alerta:create_app()"], self.log, env=self.env, cwd=LOGS)
        wait_ready(self.process, self._ready, name=self.name, log=self.log, timeout=60)
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/management/gtg", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop the master by pid (it stops its workers)."""
        terminate(self.process)


class Peer:
    """The three apps and their stores, with what each has stored so far."""

    def __init__(self, workdir: Path, workers: int, threads: int):
        self.workdir = workdir
        self.workers = workers
        self.threads = threads
        self.redis = LocalRedis(workdir / "redis")
        self.postgres = LocalPostgres()
        self.servers: dict[str, Gunicorn | Alerta] = {}

    def start(self) -> "Peer":
        """Start Redis, PostgreSQL (two databases) and the three apps."""
        self.redis.start()
        self.postgres.start()
        for database in ("stock", "tuned"):
            self.postgres.sql(f"CREATE DATABASE {database}")
        # Per database: every connection alerta-tuned opens commits without waiting for
        # the WAL flush; alerta stock keeps PostgreSQL's durable default.
        self.postgres.sql("ALTER DATABASE tuned SET synchronous_commit = off")
        metrics = self.workdir / "metrics"
        metrics.mkdir()
        env = {
            "REDIS_URL": self.redis.url,
            "BACKSTOP_WEBHOOK_TOKEN": TOKEN,
            "BACKSTOP_API_TOKEN": secrets.token_urlsafe(24),
            "BACKSTOP_LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        self.servers["backstop"] = Gunicorn(
            "receiver.app:create_app()", env, workers=self.workers, log=LOGS / "backstop.log"
        ).start()
        for name, database, plugins in (
            ("alerta", "stock", STOCK_PLUGINS),
            ("alerta-tuned", "tuned", TUNED_PLUGINS),
        ):
            url = self.postgres.url(database)
            self.servers[name] = Alerta(name, url, plugins, self.workers, self.threads).start()
        return self

    def stop(self) -> None:
        """Stop everything started, by pid."""
        for server in self.servers.values():
            server.stop()
        self.postgres.stop()
        self.redis.stop()

    def path(self, app: str) -> str:
        """Each app's Alertmanager webhook endpoint."""
        return "/webhooks/alertmanager" if app == "backstop" else "/webhooks/prometheus"

    def wrk(self, app: str, seconds: int, connections: int, mode: str) -> dict:
        """One bench.ingest wrk run against `app`'s endpoint, with its settings."""
        env = LUA_ENV if app == "backstop" else ALERTA_LUA_ENV
        return wrk(self.servers[app].url, seconds, connections, mode, self.path(app), env)

    def stored(self, app: str) -> int:
        """Alert notifications stored so far. Backstop: new episodes recorded, as the
        events its intake appended to the stream ever (`entries-added`, which the stream's
        trimming and the episode cap do not lower); its repeats are counted behind the
        answer, so they are not counted here. alerta: its rows plus the duplicates counted
        on them."""
        if app == "backstop":
            client = redis.Redis.from_url(self.redis.url)
            try:
                if not client.exists(keys.EVENTS):
                    return 0
                return int(client.xinfo_stream(keys.EVENTS)["entries-added"])
            finally:
                client.close()
        database = "stock" if app == "alerta" else "tuned"
        row = self.postgres.sql(
            "SELECT count(*) + coalesce(sum(duplicate_count), 0) FROM alerts", database
        )
        return int(row)

    def cpu(self, app: str) -> tuple[float, float]:
        """CPU seconds so far of the app's gunicorn workers and of its store."""
        server = self.servers[app]
        assert server.process is not None  # started
        app_cpu = cpu_seconds(workers_of(server.process.pid))
        if app == "backstop":
            assert self.redis.process is not None
            return app_cpu, cpu_seconds([self.redis.process.pid])
        assert self.postgres.process is not None
        return app_cpu, postgres_cpu(self.postgres.process.pid)

    def measure(self, app: str, seconds: int, connections: int, mode: str) -> dict:
        """One wrk run against `app`: throughput of 2xx answers, latency, errors, CPU per
        request (µs) of app, store and wrk, and how many of the accepted alerts were stored."""
        stored0 = self.stored(app)
        app0, store0 = self.cpu(app)
        row = self.wrk(app, seconds, connections, mode)
        time.sleep(0.5)  # requests wrk gave up on at its deadline finish in the server
        app1, store1 = self.cpu(app)
        requests_done = row.pop("requests")
        answered = requests_done - row["errors"]
        per_request = 1e6 / max(1, requests_done)
        row["ok_rps"] = round(row["rps"] * answered / max(1, requests_done), 1)
        row["cpu_us_per_request"] = {
            "app": round((app1 - app0) * per_request),
            "store": round((store1 - store0) * per_request),
            "wrk": round(row.pop("wrk_cpu_s") * per_request),
        }
        row["accepted_alerts"] = answered * ALERTS_PER_WEBHOOK
        row["stored"] = self.stored(app) - stored0
        return row


def run(rounds: int, seconds: int, connections: int, workers: int, threads: int) -> list[dict]:
    """Measure the three apps in interleaved rounds, in both modes; one result per mode."""
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    ensure_peer_venv()
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="backstop-peer-"))
    results: dict[str, dict[str, list[dict]]] = {m: {a: [] for a in APPS} for m in MODES}
    peer = Peer(work, workers, threads)
    try:
        peer.start()
        for mode in MODES:  # warm-up: imports, connections, caches, PostgreSQL's buffers
            for app in APPS:
                peer.wrk(app, 2, connections, mode)
        for index in range(rounds):
            for mode in MODES:
                # Rotate the order each round so no app always runs right after another.
                order = APPS[index % len(APPS) :] + APPS[: index % len(APPS)]
                for app in order:
                    row = peer.measure(app, seconds, connections, mode)
                    results[mode][app].append(row)
                    print(
                        f"round {index + 1} {mode:<6} {app:<12} {row['ok_rps']:>8.1f} req/s "
                        f"errors {row['errors']} stored {row['stored']}/{row['accepted_alerts']}",
                        flush=True,
                    )
    finally:
        peer.stop()
        shutil.rmtree(work, ignore_errors=True)
    return [summarize(m, results[m], rounds, seconds, connections, workers, threads) for m in MODES]


def summarize(
    mode: str,
    runs: dict[str, list[dict]],
    rounds: int,
    seconds: int,
    connections: int,
    workers: int,
    threads: int,
) -> dict:
    """One mode's entry for bench/results.json."""
    apps = {app: _summarize(app, mode, rows) for app, rows in runs.items()}
    ours = apps["backstop"]
    ratios, round_ratios, cpu_ratios = {}, {}, {}
    for peer in ("alerta", "alerta-tuned"):
        ratios[peer] = round(ours["ok_rps"] / max(0.1, apps[peer]["ok_rps"]), 2)
        pairs = zip(runs["backstop"], runs[peer], strict=True)
        round_ratios[peer] = [round(a["ok_rps"] / max(0.1, b["ok_rps"]), 2) for a, b in pairs]
        # CPU per request, app + store + wrk: what the ratio would be on cores kept busy
        # by this load alone; others' load on the machine hardly moves it.
        cpu_ratios[peer] = round(cpu_total(apps[peer]) / max(1, cpu_total(ours)), 2)
    measured = ratios["alerta-tuned"]
    # The comparison holds only if every app answered every request with a 2xx and stored
    # every alert it accepted: an app answering errors, or storing nothing, is not fast.
    honest = all(
        app["errors"] == 0 and app["stored_in_full"] and app["ok_rps"] > 0 for app in apps.values()
    )
    fresh = mode == "fresh"
    return {
        "id": IDS[mode],
        "what": (
            "ingest throughput, Backstop / alerta-server tuned (PostgreSQL), "
            + ("every alert new" if fresh else "alerts repeated as Alertmanager does")
        ),
        "measured": measured,
        "unit": "x",
        "target": f">= {TARGET:g}x" if fresh else "ratio recorded",
        "pass": honest and (measured >= TARGET or not fresh),
        "comparison_valid": honest,
        "ratios": ratios,
        "round_ratios": round_ratios,
        "cpu_ratios": cpu_ratios,
        "apps": apps,
        "settings": {
            "rounds": rounds,
            "seconds": seconds,
            "connections": connections,
            "gunicorn_workers": workers,
            "gunicorn_threads": threads,
            "mode": mode,
            "peer": list(PINS),
            "postgresql": postgres_version(),
            **machine(),
        },
    }


def _summarize(app: str, mode: str, rows: list[dict]) -> dict:
    return {
        **ingest.summarize(rows, rate="ok_rps", store="store"),
        "socket_errors": [r["socket_errors"] for r in rows if r["socket_errors"]],
        "stored": [f"{r['stored']}/{r['accepted_alerts']}" for r in rows],
        # Backstop counts repeats behind the answer (not checked); alerta, before it.
        "stored_in_full": (app == "backstop" and mode == "repeat")
        or all(r["stored"] >= r["accepted_alerts"] for r in rows),
    }


def report(result: dict) -> None:
    """Print one mode's table and verdict."""
    print(f"\n{result['id']} ({result['settings']['mode']})")
    print(
        f"{'app':<13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   "
        "CPU µs/request: app store wrk   stored/accepted"
    )
    for name, row in result["apps"].items():
        cpu = row["cpu_us_per_request"]
        print(
            f"{name:<13} {row['ok_rps']:>9.1f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['errors']:>7}   {cpu['app']:>19} {cpu['store']:>5} {cpu['wrk']:>3}   "
            f"{', '.join(row['stored'])}"
        )
    for peer in ("alerta", "alerta-tuned"):
        rounds = ", ".join(f"{r:g}" for r in result["round_ratios"][peer])
        print(
            f"Backstop / {peer}: {result['ratios'][peer]:g}x (rounds {rounds}); "
            f"CPU-per-request ratio {result['cpu_ratios'][peer]:g}x"
        )
    verdict = "PASS" if result["pass"] else "FAIL"
    if not result["comparison_valid"]:
        print("not a valid comparison: an app answered errors or did not store what it accepted")
    print(f"{result['id']} {result['measured']:g}x (target {result['target']}): {verdict}")


def main() -> int:
    """Run the benchmark, print the tables, record both entries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=webworker.model()["threads"],
        help="threads per alerta worker (default: as many as Backstop's workers have)",
    )
    args = parser.parse_args()
    results = run(args.rounds, args.seconds, args.connections, args.workers, args.threads)
    for result in results:
        report(result)
        record(result, HERE / "results.json")
    return 0 if all(result["pass"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
