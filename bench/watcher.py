"""P6: the deployment watcher at scale, on the Kubernetes test control plane.

Run with `make bench-watcher`. Redis and the control plane (testbed/kube) are started in a
work directory of their own and stopped by pid at the end. The cluster is filled with
Deployments (replicas 0: the deployment controller still makes a ReplicaSet and a
revision for each), StatefulSets and DaemonSets across 100 namespaces, and the real
watcher process (`backstop watch`, every namespace) is started against it at 0, 1,000 and
5,000 Deployments. Each start measures:

- relist: from the process's launch to its last "listed" log line (one per kind, written
  when a kind's LIST is recorded and its watch opens), first with an empty store (every
  object new) and then again with the store filled (a restart, the common case);
- steady RSS (VmRSS a few seconds after the relist) and peak RSS (VmHWM, the kernel's
  high-water mark since the process started), from /proc/<pid>/status.

At 5,000 the watcher keeps running while a few hundred Deployments get a new image at a
modest rate. Own lag is measured per change from the arrival of the Deployment event that
shows the new revision (read by this process's own watch of the same API server, so the
controller's backlog is excluded) to the write of that revision in Redis (a keyspace
notification). Every workload's history is then checked: each rollout recorded exactly
once, none missed. The 1.20 controller manager works through creations at about 20
requests a second; the benchmark waits for it before each start and does not count it.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import yaml
from kubernetes import client, config

from bench.fleet import NAMESPACES, REVISION, Fleet, namespace
from bench.memory import KB_PER_MB, status_kb
from bench.results import record
from bench.storm import percentile
from bench.table import machine
from cli.localredis import LocalRedis
from core.store import keys
from testbed.kube import kubebuild
from testbed.kube.kube import ControlPlane
from testbed.processes import launch, poll, terminate

HERE = Path(__file__).resolve().parent
PEAK_TARGET_MB, RELIST_TARGET_S, LAG_P99_TARGET_MS = 150.0, 5.0, 50.0
KINDS = ("Deployment", "StatefulSet", "DaemonSet")
SETTLE_S = 5.0  # after the relist, before "steady" RSS is read


class WatcherProcess:
    """`backstop watch` against the cluster, with the pids, log and timings of one start."""

    def __init__(self, workdir: Path, env: dict[str, str], tag: str):
        self.log = workdir / f"watcher-{tag}.log"
        self.launched = time.time()
        self.process = launch([sys.executable, "-m", "cli.main", "watch"], self.log, env=env)

    def listed(self) -> dict[str, dict] | None:
        """The "listed" line of each kind once all are written, else None."""
        found = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if '"listed"' in line:
                entry = json.loads(line)
                found[entry["kind"]] = entry
        return found if set(KINDS) <= set(found) else None

    def measure(self) -> dict:
        """Wait for the relist, then read its time and the process's memory."""
        listed = poll(self.listed, timeout=600, interval=0.02)
        done = max(_epoch(entry["time"]) for entry in listed.values())
        time.sleep(SETTLE_S)
        status = status_kb(self.process.pid)
        return {
            "relist_s": round(done - self.launched, 2),
            "list_s": {kind: listed[kind]["seconds"] for kind in KINDS},
            "steady_mb": round(status["VmRSS"] / KB_PER_MB, 1),
            "peak_mb": round(status["VmHWM"] / KB_PER_MB, 1),
        }

    def peak_mb(self) -> float:
        return round(status_kb(self.process.pid)["VmHWM"] / KB_PER_MB, 1)

    def stop(self) -> None:
        terminate(self.process)


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of a log line's time ('2026-11-01T12:00:00.123Z')."""
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class LagProbe:
    """Own lag: event arrival (this process's watch) → revision written (keyspace event)."""

    def __init__(self, api: client.ApiClient, connection: redis.Redis, resource_version: str):
        self.apps = client.AppsV1Api(api)
        self.redis = connection
        self.arrived: dict[str, float] = {}  # "ns/name" -> monotonic time of revision 2
        self.written: dict[str, float] = {}  # "ns/name" -> first write of its revisions key
        self.patched: dict[str, float] = {}
        self.stop = threading.Event()
        connection.config_set("notify-keyspace-events", "Kh")
        self.pubsub = connection.pubsub()
        self.pubsub.psubscribe(f"__keyspace@0__:{keys.WORKLOAD_REVISIONS}*")
        self.threads = [
            threading.Thread(target=self._watch, args=(resource_version,), daemon=True),
            threading.Thread(target=self._listen, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _watch(self, resource_version: str) -> None:
        try:
            self._follow(resource_version)
        except Exception:  # the API server stopped under the watch at the end
            if not self.stop.is_set():
                raise

    def _follow(self, resource_version: str) -> None:
        while not self.stop.is_set():
            response = self.apps.list_deployment_for_all_namespaces(
                watch=True,
                resource_version=resource_version,
                timeout_seconds=30,
                _preload_content=False,
            )
            for line in response:
                now = time.monotonic()
                event = json.loads(line)
                meta = event["object"]["metadata"]
                resource_version = meta.get("resourceVersion", resource_version)
                key = f"{meta.get('namespace')}/{meta.get('name')}"
                revision = (meta.get("annotations") or {}).get(REVISION)
                if revision == "2" and key in self.patched:
                    self.arrived.setdefault(key, now)

    def _listen(self) -> None:
        prefix = f"__keyspace@0__:{keys.WORKLOAD_REVISIONS}default/"
        while not self.stop.is_set():
            message = self.pubsub.get_message(timeout=0.5)
            if not message or message["type"] != "pmessage" or message["data"] != b"hset":
                continue
            now = time.monotonic()
            # The workload key is cluster/namespace/Kind/name (core/models.py).
            channel = message["channel"].decode()[len(prefix) :]
            ns, _, rest = channel.partition("/")
            key = f"{ns}/{rest.partition('/')[2]}"
            if key in self.patched and now > self.patched[key]:
                self.written.setdefault(key, now)

    def lags_ms(self) -> list[float]:
        return [
            round((self.written[k] - self.arrived[k]) * 1000, 2)
            for k in self.patched
            if k in self.written and k in self.arrived
        ]

    def close(self) -> None:
        self.stop.set()
        # The listener first (it wakes every 0.5 s): closing its connection under a
        # get_message in progress raised in its thread.
        self.threads[1].join(timeout=5)
        self.pubsub.close()


def change_images(fleet: Fleet, probe: LagProbe, changes: int, rate: float) -> None:
    """Give `changes` Deployments (spread over every namespace) a new image at `rate`/s."""
    step = max(1, len(fleet.deployments) // changes)
    for ns, name in fleet.deployments[::step][:changes]:
        started = time.monotonic()
        probe.patched[f"{ns}/{name}"] = started
        container = {"name": "app", "image": f"shop/{name}:2"}
        patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
        fleet.apps.patch_namespaced_deployment(name, ns, patch, _preload_content=False)
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


def audit(connection: redis.Redis, fleet: Fleet, changed: set[str]) -> dict:
    """Each workload's recorded revisions against what happened: missed and doubled."""
    expected = {
        f"default/{ns}/Deployment/{name}": {"1", "2"} if f"{ns}/{name}" in changed else {"1"}
        for ns, name in fleet.deployments
    }
    for i in range(fleet.statefulsets):
        expected[f"default/{namespace(i)}/StatefulSet/sts-{i:03d}"] = {"1"}
    for i in range(fleet.daemonsets):
        expected[f"default/{namespace(i)}/DaemonSet/ds-{i:03d}"] = {"1"}
    pipe = connection.pipeline(transaction=False)
    for key in expected:
        pipe.hkeys(keys.workload_revisions(key))
        pipe.zcard(keys.workload_rollouts(key))
    answers = pipe.execute()
    missed = doubled = 0
    for wanted, revisions, rollouts in zip(
        expected.values(), answers[0::2], answers[1::2], strict=True
    ):
        found = {r.decode() for r in revisions}
        missed += len(wanted - found)
        # Two records of one revision, or a record of a revision that never happened.
        doubled += (rollouts - len(found)) + len(found - wanted)
    return {"checked": len(expected), "missed": missed, "doubled": doubled}


def environment(workdir: Path, redis_url: str, kubeconfig: Path) -> dict[str, str]:
    """The watcher's environment: every namespace watched, nothing else configured."""
    policy = workdir / "backstop.yaml"
    policy.write_text(yaml.safe_dump({"mode": "enforce"}))
    keep = ("BACKSTOP_", "JIRA_", "PAGERDUTY_", "PROMETHEUS_", "KUBECONFIG", "REDIS_URL")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(keep)},
        "REDIS_URL": redis_url,
        "BACKSTOP_CONFIG": str(policy),
        "BACKSTOP_LOG_FORMAT": "json",
        "KUBECONFIG": str(kubeconfig),
    }


def start(workdir: Path, env: dict[str, str], tag: str, runs: dict) -> WatcherProcess:
    """Start a watcher, measure its relist and memory into `runs[tag]`; left running."""
    watcher = WatcherProcess(workdir, env, tag)
    runs[tag] = watcher.measure()
    print(f"{tag:>14}: {runs[tag]}", file=sys.stderr, flush=True)
    return watcher


def measure_starts(workdir, env, connection, fleet, pool, sizes, runs) -> WatcherProcess:
    """At each size: a first start (empty store) and a restart; the last one left running."""
    start(workdir, env, "0", runs).stop()
    watcher = None
    for size in sizes:
        fleet.add_deployments(pool, size - len(fleet.deployments))
        runs[f"reconcile-{size}"] = {"waited_s": fleet.wait_reconciled(timeout=1800)}
        connection.flushall()
        start(workdir, env, f"{size}-first", runs).stop()
        watcher = start(workdir, env, f"{size}-restart", runs)
        if size != sizes[-1]:
            watcher.stop()
    assert watcher is not None
    return watcher


def run(sizes: list[int], changes: int, rate: float) -> dict:
    """Fill the cluster step by step, measure each start, then the lag; the P6 entry."""
    workdir = Path(tempfile.mkdtemp(prefix="backstop-bench-watcher-"))
    print(f"stack in {workdir}", file=sys.stderr)
    load_before = os.getloadavg()
    local = LocalRedis(workdir / "redis").start()
    plane = ControlPlane(workdir / "kube", binaries=kubebuild.ensure_binaries())
    runs: dict[str, dict] = {}
    try:
        plane.start()
        settings = client.Configuration()
        config.load_kube_config(str(plane.kubeconfig), client_configuration=settings)
        settings.connection_pool_maxsize = 32
        with (
            client.ApiClient(settings) as api,
            redis.Redis.from_url(local.url) as connection,
            ThreadPoolExecutor(16) as pool,
        ):
            fleet = Fleet(api)
            fleet.create_namespaces(pool)
            fleet.add_sets(pool, statefulsets=NAMESPACES, daemonsets=NAMESPACES // 5)
            env = environment(workdir, local.url, plane.kubeconfig)
            watcher = measure_starts(workdir, env, connection, fleet, pool, sizes, runs)
            try:
                probe = LagProbe(api, connection, fleet.resource_version())
                change_images(fleet, probe, changes, rate)
                poll(lambda: len(probe.written) >= changes, timeout=600, interval=0.5)
                time.sleep(SETTLE_S)  # late duplicates, if any, would land now
                probe.close()
                lags = probe.lags_ms()
                checked = audit(connection, fleet, set(probe.patched))
                peak_after = watcher.peak_mb()
            finally:
                watcher.stop()
    finally:
        plane.stop()
        local.stop()
        shutil.rmtree(workdir / "kube" / "etcd", ignore_errors=True)  # 5,000 objects' data
    return entry(sizes, runs, lags, checked, peak_after, changes, rate, load_before, workdir)


def entry(sizes, runs, lags, checked, peak_after, changes, rate, load_before, workdir) -> dict:
    """The P6 entry of bench/results.json from the measurements."""
    top = f"{sizes[-1]}-restart"
    peak = max(runs[top]["peak_mb"], peak_after)
    relist = runs[top]["relist_s"]
    p50, p99 = percentile(lags, 0.50) or 0.0, percentile(lags, 0.99) or float("inf")
    steady_growth = (runs[top]["steady_mb"] - runs["0"]["steady_mb"]) / (sizes[-1] / 1000)
    passed = (
        peak <= PEAK_TARGET_MB
        and relist <= RELIST_TARGET_S
        and p99 <= LAG_P99_TARGET_MS
        and checked["missed"] == checked["doubled"] == 0
        and len(lags) == changes
    )
    return {
        "id": "P6",
        "what": f"watcher at {sizes[-1]:,} Deployments (+ StatefulSets, DaemonSets): "
        "peak RSS / restart relist / own lag p99 / missed+doubled",
        "measured": f"{peak} MiB / {relist} s / {p99} ms / "
        f"{checked['missed']}+{checked['doubled']}",
        "target": f"<= {PEAK_TARGET_MB:.0f} MiB flat in N / <= {RELIST_TARGET_S:.0f} s / "
        f"<= {LAG_P99_TARGET_MS:.0f} ms / 0+0",
        "pass": passed,
        "peak_mb": peak,
        "peak_vs_empty": round(peak / runs["0"]["peak_mb"], 3),
        "steady_mb_per_1000_workloads": round(steady_growth, 2),
        "relist_restart_s": relist,
        "relist_first_s": runs[f"{sizes[-1]}-first"]["relist_s"],
        "lag_ms": {
            "p50": p50,
            "p99": p99,
            "max": max(lags) if lags else None,
            "measured": len(lags),
            "median": statistics.median(lags) if lags else None,
        },
        "audit": checked,
        "starts": runs,
        "settings": {
            "sizes": sizes,
            "namespaces": NAMESPACES,
            "statefulsets": NAMESPACES,
            "daemonsets": NAMESPACES // 5,
            "changes": changes,
            "rate_per_s": rate,
            **machine(),
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "logs": str(workdir),
    }


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--sizes", default="1000,5000", help="Deployments at each step")
    cli.add_argument("--changes", type=int, default=300, help="new images for the lag")
    cli.add_argument("--rate", type=float, default=5.0, help="new images a second")
    args = cli.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    result = run(sizes, args.changes, args.rate)
    record(result, HERE / "results.json")
    for tag, values in result["starts"].items():
        print(f"{tag:>16} {values}")
    print(f"own lag {result['lag_ms']}; audit {result['audit']}")
    print(f"steady growth {result['steady_mb_per_1000_workloads']} MiB per 1,000 workloads")
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"P6 {result['measured']} (target {result['target']}): {verdict}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
