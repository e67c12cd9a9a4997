"""P3-judged: webhook received → Kubernetes PATCH sent when the rollback judges the bad
revision first, beside P3 without judgment, in the same run.

Run with `make bench-judged`. The stack is bench/latency.py's (bench/rig.py: Redis, the
receiver under gunicorn, one RQ worker, the watcher, the Kubernetes test control plane),
plus the game day's demo service (gameday/demo.py: simulated traffic to the namespace's
Ready pods, seeded noise, series per revision by `pod_template_hash`) and a real Prometheus
scraping it every second (testbed/prometheus.py); Backstop's processes get its URL.

Two arms of identical Deployments (one replica each), prepared together before the rounds:
revision 1 (`1.0.0`) serves for SETTLE_S, then every Deployment rolls out revision 2
(`1.1.0-errors`, whose pods fail 5 % of requests against 0.1 %, gameday/behaviours.py),
which serves for SETTLE_S too. Then the rounds send one kill-switch webhook per workload,
as bench/latency.py does (idle worker, `min_firing: 0s`), the two arms alternating, each
pair in the other order than the one before, so the machine's other load falls on both
alike. The alerts of the judged arm carry `bench_arm: judged`, which the policy's one
service matches; that service judges three KPIs (judgment_block) over a WINDOW_S window at
a STEP_S step, about 40 points a side. Revision 1's pods are gone by then, so each KPI is
judged before/after: the bad revision's last WINDOW_S against revision 1's WINDOW_S before
the rollout, three range queries per KPI. Every judged rollback must be `confirmed` (and
so go on to the PATCH) or the benchmark fails without reporting numbers.

Measured per round as in P3: from the webhook's send time to the start of the rollback's
`revert` step; and the judgment step's own duration from its record (started, finished).
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import redis
import requests

from bench.latency import POLICY, fire, stages
from bench.results import record
from bench.rig import Rig
from bench.storm import percentile
from bench.table import machine
from gameday.demo import DemoProcess
from testbed.kube.procs import free_port
from testbed.prometheus import PrometheusServer

HERE = Path(__file__).resolve().parent
P99_TARGET_MS = 500.0
ARM_LABEL = "bench_arm"
ARMS = ("plain", "judged")
WINDOW_S, STEP_S = 40, 1
RATE_RANGE = "6s"  # each rate() reaches this far back: six scrapes
# How long each revision serves before the next step: the window, the rate's reach, and a
# few seconds for the demo to see the pods (0.5 s) and Prometheus to scrape them (1 s).
SETTLE_S = WINDOW_S + 6 + 4
MIN_SAMPLES = 20  # half the window: a judgment on less is no data, and the bench fails
NOISE_SEED = 21
# Later rounds alert minutes after their workload's rollout: the default 10 m could run out
# on a busy machine, and a lookback does not change the work a decision does.
LOOKBACK = "1h"
PREPARE_TIMEOUT_S = 300.0

_REVISION = 'namespace="$namespace",deployment="$name",pod_template_hash="$hash"'


def kpis(min_samples: int = MIN_SAMPLES) -> list[dict]:
    """The three KPIs judged: 5xx ratio, p99 latency from the histogram, request rate."""
    requests_ = f"demo_requests_total{{{_REVISION}}}"
    errors = f'demo_requests_total{{{_REVISION},code="500"}}'
    buckets = f"demo_request_duration_seconds_bucket{{{_REVISION}}}"
    return [
        {
            "name": "5xx ratio",
            "query": f"sum(rate({errors}[{RATE_RANGE}])) / sum(rate({requests_}[{RATE_RANGE}]))",
            "min_samples": min_samples,
        },
        {
            "name": "p99 latency",
            "query": f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{RATE_RANGE}])))",
            "min_samples": min_samples,
        },
        {
            "name": "request rate",
            # `> 0`: a revision whose pods are gone still exposes its counters (rate 0); its
            # points then are no observation, as the ratio's NaN is none.
            "query": f"sum(rate({requests_}[{RATE_RANGE}])) > 0",
            "bad": "lower",
            "min_samples": min_samples,
        },
    ]


def judgment_block(window_s: int = WINDOW_S, step_s: int = STEP_S) -> dict:
    """The judged service's `judgment:` block (config/judgment.py)."""
    return {
        "mode": "require",
        "confidence": 0.98,
        "window": f"{window_s}s",
        "step": f"{step_s}s",
        "kpis": kpis(),
    }


def policy(window_s: int = WINDOW_S, step_s: int = STEP_S) -> dict:
    """P3's policy with one service, matched by `bench_arm: judged`, that judges."""
    service = {
        "name": "judged",
        "match": {ARM_LABEL: "judged"},
        "judgment": judgment_block(window_s, step_s),
    }
    defaults = {**POLICY["defaults"], "lookback": LOOKBACK}
    return {**POLICY, "defaults": defaults, "services": [service]}


def arm_order(pair: int) -> tuple[str, str]:
    """Which arm goes first in pair `pair`: plain first in even pairs, judged in odd ones."""
    return ARMS if pair % 2 == 0 else (ARMS[1], ARMS[0])


def workload_name(arm: str, pair: int) -> str:
    """The Deployment alerted about in `arm`'s round of pair `pair`."""
    return f"{arm}-{pair:02d}"


def step_ms(rollback: dict, name: str) -> float | None:
    """How long the rollback's step `name` took, in ms (None if it has none)."""
    found = [s for s in rollback.get("steps", []) if s["name"] == name]
    if not found:
        return None
    step = found[-1]
    started, finished = (_seconds(step[key]) for key in ("started_at", "finished_at"))
    return round((finished - started) * 1000, 2)


def judged_kpis(rollback: dict) -> list[dict]:
    """What the judgment found per KPI, briefly: how, points a side, medians, verdict."""
    keep = ("name", "how", "baseline", "n_new", "n_old", "median_new", "median_old")
    keep += ("p_value", "verdict")
    return [{k: kpi.get(k) for k in keep} for kpi in rollback.get("judgment", {}).get("kpis", [])]


def kpi_overview(rounds: list[dict]) -> dict:
    """Per KPI over the judged rounds: how it was judged, the fewest points a side, how
    often each verdict came, and how often the old side was cut to the second half of its
    window (core/judging.py's trend guard: it looked worse already before the rollout)."""
    found: dict[str, dict] = {}
    for kpi in (k for r in rounds for k in r["kpis"]):
        empty = {"how": [], "n_new_min": None, "n_old_min": None, "verdicts": {}, "halved": 0}
        seen = found.setdefault(kpi["name"], empty)
        seen["halved"] += str(kpi.get("baseline", "")).startswith("second half")
        if kpi["how"] not in seen["how"]:
            seen["how"].append(kpi["how"])
        for side in ("n_new", "n_old"):
            least = seen[f"{side}_min"]
            seen[f"{side}_min"] = kpi[side] if least is None else min(least, kpi[side])
        seen["verdicts"][kpi["verdict"]] = seen["verdicts"].get(kpi["verdict"], 0) + 1
    return found


def check_confirmed(rollback: dict, round_index: int) -> None:
    """RuntimeError unless the rollback was judged, `confirmed`, and reverted."""
    judgment = rollback.get("judgment") or {}
    verdict = judgment.get("verdict")
    if step_ms(rollback, "judgment") is None or verdict != "confirmed":
        raise RuntimeError(
            f"round {round_index}: judgment {verdict or 'missing'}: {judgment.get('detail')}"
        )
    if step_ms(rollback, "revert") is None:
        raise RuntimeError(f"round {round_index}: confirmed but not reverted")


def spread(values: list[float]) -> dict:
    """p50, p99, min and max of `values` (ms)."""
    return {
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "min_ms": min(values),
        "max_ms": max(values),
    }


def _seconds(stamp: str) -> float:
    """Seconds since the epoch of the API's ISO time (UTC)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class JudgedRig(Rig):
    """bench/rig.py's stack whose processes ask `prometheus_url` (judgment, verification)."""

    def __init__(self, workdir: Path, policy: dict, prometheus_url: str, **kwargs):
        super().__init__(workdir, policy, **kwargs)
        self.prometheus_url = prometheus_url

    def env(self) -> dict[str, str]:
        """Rig's environment with PROMETHEUS_URL (config/settings.py)."""
        return {**super().env(), "PROMETHEUS_URL": self.prometheus_url}


def prepare(rig: Rig, names: list[str]) -> None:
    """Every Deployment on revision 1 for SETTLE_S, then on revision 2 for SETTLE_S, so
    both revisions have a window of data and the watcher recorded each rollout."""
    for name in names:
        rig.cluster.create(name, f"shop/{name}:1.0.0", replicas=1)
    rig.cluster.wait_rolled_out(*names, timeout=PREPARE_TIMEOUT_S)
    print(f"{len(names)} Deployments on revision 1; {SETTLE_S} s of data", file=sys.stderr)
    time.sleep(SETTLE_S)
    bad = {name: f"shop/{name}:1.1.0-errors" for name in names}
    rig.deploy_recorded(bad, timeout=PREPARE_TIMEOUT_S)
    rig.cluster.wait_rolled_out(*names, timeout=PREPARE_TIMEOUT_S)
    print(f"revision 2 rolled out; {SETTLE_S} s of data", file=sys.stderr)
    time.sleep(SETTLE_S)


def uptime() -> str:
    """`uptime`'s line: the machine is shared, and its load moves these numbers."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def run(rounds: int, warmup: int) -> dict:
    """Warm up, then measure `rounds` pairs (one round of each arm); the P3-judged entry."""
    workdir = Path(tempfile.mkdtemp(prefix="backstop-bench-judged-"))
    print(f"stack in {workdir}", file=sys.stderr)
    load_before, uptime_before = os.getloadavg(), uptime()
    pairs = warmup + rounds
    names = [workload_name(arm, pair) for pair in range(pairs) for arm in ARMS]
    demo_port = free_port()
    # Prometheus's port is chosen now, so the rig's processes start with its URL; it is
    # started once the control plane the demo service watches is up.
    prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{demo_port}"])
    measured: list[dict] = []
    with contextlib.ExitStack() as stack:
        rig = stack.enter_context(
            JudgedRig(
                workdir, policy(), prometheus.url, namespace="judged", web_workers=2, rq_workers=1
            )
        )
        demo = DemoProcess(
            rig.plane.kubeconfig, rig.namespace, workdir / "demo", port=demo_port, noise=NOISE_SEED
        )
        # Stopped by pid however far their start got.
        stack.callback(demo.stop)
        demo.start()
        stack.callback(prometheus.stop)
        prometheus.start()
        session = stack.enter_context(requests.Session())
        connection = stack.enter_context(redis.Redis.from_url(rig.redis.url))
        prepare(rig, names)
        for pair in range(pairs):
            for arm in arm_order(pair):
                name, index = workload_name(arm, pair), len(measured)
                result, rollback = fire(rig, session, connection, name, index, {ARM_LABEL: arm})
                if arm == "judged":
                    check_confirmed(rollback, index)
                elif step_ms(rollback, "judgment") is not None:
                    raise RuntimeError(f"round {index}: the plain arm was judged")
                result.update(
                    arm=arm,
                    warmup=pair < warmup,
                    judgment_ms=step_ms(rollback, "judgment"),
                    kpis=judged_kpis(rollback),
                )
                measured.append(result)
                took = result["ms"]["patch"]
                judging = f" (judgment {result['judgment_ms']:.1f} ms)" if arm == "judged" else ""
                print(f"round {index:2d} {arm:6} → PATCH {took:8.1f} ms{judging}", file=sys.stderr)
    return summary(measured, rounds, warmup, workdir, load_before, uptime_before)


def summary(
    measured: list[dict],
    rounds: int,
    warmup: int,
    workdir: Path,
    load_before: tuple[float, float, float],
    uptime_before: str,
) -> dict:
    """The P3-judged entry of bench/results.json from the rounds."""
    counted = {arm: [r for r in measured if r["arm"] == arm and not r["warmup"]] for arm in ARMS}
    plain, judged = (spread([r["ms"]["patch"] for r in counted[arm]]) for arm in ARMS)
    judging = spread([r["judgment_ms"] for r in counted["judged"]])
    queries = [
        sum(3 if k["how"] == "before_after" else 2 for k in r["kpis"]) for r in counted["judged"]
    ]
    return {
        "id": "P3-judged",
        "what": "webhook received → Kubernetes PATCH sent, the rollback judging 3 KPIs "
        "against a local Prometheus first, idle worker, p50 / p99",
        "measured": f"{judged['p50_ms']} / {judged['p99_ms']} ms",
        "target": f"p99 <= {P99_TARGET_MS:.0f} ms",
        "pass": judged["p99_ms"] <= P99_TARGET_MS,
        **judged,
        "unjudged": {**plain, "stages_median_ms": stages(counted["plain"])},
        "ratio_p50": round(judged["p50_ms"] / plain["p50_ms"], 2),
        "ratio_p99": round(judged["p99_ms"] / plain["p99_ms"], 2),
        "judgment_step": judging,
        "range_queries_per_judgment": statistics.median(queries),
        "kpis": kpi_overview(counted["judged"]),
        "stages_median_ms": stages(counted["judged"]),
        "rounds": measured,
        "settings": {
            "rounds": rounds,
            "warmup": warmup,
            "rq_workers": 1,
            "judgment": judgment_block(),
            "settle_s": SETTLE_S,
            "demo_noise_seed": NOISE_SEED,
            **machine(),
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "uptime": {"before": uptime_before, "after": uptime()},
        "logs": str(workdir),
    }


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--rounds", type=int, default=30, help="measured rounds of each arm")
    cli.add_argument("--warmup", type=int, default=2, help="discarded rounds of each arm")
    args = cli.parse_args(argv)
    result = run(args.rounds, args.warmup)
    record(result, HERE / "results.json")
    plain, judging = result["unjudged"], result["judgment_step"]
    print(f"{'stage (judged arm)':22} {'median ms':>10}")
    for label, value in result["stages_median_ms"].items():
        print(f"{label:22} {value:>10.1f}")
    print(f"P3 without judgment  {plain['p50_ms']} / {plain['p99_ms']} ms")
    print(f"judgment step        {judging['p50_ms']} / {judging['p99_ms']} ms")
    print(f"ratio judged / plain p50 {result['ratio_p50']}, p99 {result['ratio_p99']}")
    for name, kpi in result["kpis"].items():
        print(f"KPI {name}: {kpi}")
    print(f"uptime before: {result['uptime']['before']}")
    print(f"uptime after:  {result['uptime']['after']}")
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"{result['id']} {result['measured']} (target {result['target']}): {verdict}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
