"""The game day's demo service: simulated traffic whose health follows the deployed image.

It answers no real requests. Every 0.5 s it lists the Ready pods labelled
`demo.backstop.io/service` in one namespace; every 0.25 s it counts the requests those pods
would have answered since the last step. Each service (the label's value) gets `--rate`
requests per second, split evenly over its Ready pods, so a 1-pod canary beside 9 stable
pods gets 10%. A pod's 5xx ratio and latency follow its image tag (gameday/behaviours.py);
its Deployment is its `app` label. By default counting is deterministic: each step adds
exactly rate * seconds requests, of which exactly ratio * requests fail, so counters are
fractional and their rates are flat rather than jumping by whole requests (a 10 request/s
canary at 0.1% would otherwise show a 1% ratio whenever its one failure per 100 s is in
the window).

`--noise SEED` makes the data look like a real service's instead: each step's requests per
pod are a Poisson count around the rate, failures (and slow requests) binomial around
their ratio, and every duration jittered, all from random.Random(SEED); a 0.3% pod then
scatters from window to window while its long-run ratio stays 0.3%. The same seed and the
same pods and steps give the same counts.

`--segments ios=0.3,android=0.3,web=0.4` splits every pod's traffic over client segments
by weight (weights are relative: they are scaled to sum to 1, so a service's total stays
`--rate`), each its own series with a `segment` label; without it there is no such label.

HTTP on 127.0.0.1 only, without authentication (a loopback test service):
  GET  /metrics  demo_requests_total{namespace,deployment,service,pod_template_hash,code}
                 (code "200"/"500") and the histogram
                 demo_request_duration_seconds{namespace,deployment,service,pod_template_hash},
                 both with `segment` after pod_template_hash if --segments is given;
                 `pod_template_hash` is the revision of the pods that answered (their
                 pod-template-hash, controller-revision-hash or rollouts-pod-template-hash
                 label, else ""), so a revision can be told from another; sums over it
                 (and over `segment`) are the workload's
  POST /control  {"deployment": "checkout", "error_ratio": 0.5, "seconds": 5}: that
                 Deployment's pods fail at that ratio for that long (a fault without a
                 rollout); with "segment": "ios" only that segment's requests do (a
                 segment failure; a segment's own fault wins over the Deployment's)
  GET  /control  the active faults

Run: `python -m gameday.demoserver --kubeconfig PATH --namespace NS --port PORT
[--rate 100] [--segments ios=0.3,web=0.7] [--noise SEED]`; tests and game days start it
as a process with DemoProcess (gameday/demoserver.py is the process: poller, ticker, HTTP).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import urllib.request
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from cli.localredis import free_port
from gameday.behaviours import Answered, Flat, Noisy, behaviour_for
from testbed.processes import launch, terminate, wait_ready

SERVICE_LABEL = "demo.backstop.io/service"
# A pod's revision, by the label its controller gives it (Deployment, StatefulSet or
# DaemonSet, Argo Rollout).
REVISION_LABELS = ("pod-template-hash", "controller-revision-hash", "rollouts-pod-template-hash")
DEPLOYMENT_LABEL = "app"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds; +Inf is added on exposition
SEGMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pod:
    """A pod that takes traffic."""

    name: str
    deployment: str
    service: str
    image: str
    revision: str = ""


def serving_pods(pods: Iterable[client.V1Pod]) -> list[Pod]:
    """The pods that take traffic: Ready, not terminating, with an `app` label."""
    serving = []
    for pod in pods:
        labels = pod.metadata.labels or {}
        conditions = (pod.status and pod.status.conditions) or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        # An endpoints controller drops terminating pods too; without `app` there is no
        # Deployment to count for.
        terminating = pod.metadata.deletion_timestamp is not None
        if ready and not terminating and labels.get(DEPLOYMENT_LABEL) and labels.get(SERVICE_LABEL):
            serving.append(
                Pod(
                    name=pod.metadata.name,
                    deployment=labels[DEPLOYMENT_LABEL],
                    service=labels[SERVICE_LABEL],
                    image=pod.spec.containers[0].image,
                    revision=next((labels[k] for k in REVISION_LABELS if labels.get(k)), ""),
                )
            )
    return serving


def check_segments(weights: Mapping[str, float]) -> dict[str, float]:
    """Client segments' weights scaled to sum to 1; ValueError for a bad name or weight."""
    if not weights:
        raise ValueError("give at least one segment")
    for name, weight in weights.items():
        if not isinstance(name, str) or not SEGMENT_NAME.fullmatch(name):
            raise ValueError(f"segment {name!r}: a name is letters, digits, '_', '.', '-'")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"segment {name}: the weight must be a number")
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"segment {name}: the weight must be above 0")
    total = math.fsum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def parse_segments(text: str) -> dict[str, float]:
    """`ios=0.3,android=0.3,web=0.4` as check_segments' weights; ValueError if malformed."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, equals, weight = (part.strip() for part in item.partition("="))
        if not equals:
            raise ValueError(f"{item.strip()!r} is not name=weight")
        if name in weights:
            raise ValueError(f"segment {name} is given twice")
        try:
            weights[name] = float(weight)
        except ValueError:
            raise ValueError(f"segment {name}: {weight!r} is not a number") from None
    return check_segments(weights)


@dataclass
class Series:
    """What one series has answered so far; every number only grows."""

    codes: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0})
    # Requests per histogram bucket, not cumulative; the last is above every bound.
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(BUCKETS) + 1))
    seconds: float = 0.0

    def add(self, answered: Answered) -> None:
        self.codes["500"] += answered.failed
        self.codes["200"] += answered.ok
        for took, count in answered.durations:
            self.buckets[bisect_left(BUCKETS, took)] += count
            self.seconds += took * count


class Traffic:
    """The simulation: serving pods and elapsed time in, Prometheus metrics out. Thread-safe.

    `segments` (name → weight) splits each pod's requests by client segment; `noise` (a
    seed) draws each step's counts as a real service's would scatter (see the module's
    docstring)."""

    def __init__(
        self,
        namespace: str,
        rate: float,
        *,
        segments: Mapping[str, float] | None = None,
        noise: int | None = None,
    ):
        self.namespace = namespace
        self.rate = rate
        self.segmented = bool(segments)
        self.segments = check_segments(segments) if segments else {"": 1.0}
        self.draw = Flat() if noise is None else Noisy(noise)
        # (deployment, service, revision, segment) → what it answered
        self.series: dict[tuple[str, str, str, str], Series] = {}
        # (deployment, segment or "" for all of them) → (ratio, until)
        self.faults: dict[tuple[str, str], tuple[float, float]] = {}
        self.lock = threading.Lock()

    def advance(self, pods: Iterable[Pod], seconds: float, now: float) -> None:
        """Count what `pods` answered in the last `seconds`; `now` (monotonic) ends faults."""
        pods = sorted(pods, key=lambda pod: pod.name)  # the same draws whatever the order
        per_service = Counter(pod.service for pod in pods)
        with self.lock:
            for pod in pods:
                requests = self.rate * seconds / per_service[pod.service]
                behaviour = behaviour_for(pod.image)
                for segment, weight in self.segments.items():
                    usual = behaviour.error_ratio_for(segment)
                    ratio = self._error_ratio(pod.deployment, segment, usual, now)
                    key = (pod.deployment, pod.service, pod.revision, segment)
                    series = self.series.setdefault(key, Series())
                    series.add(self.draw.answer(requests * weight, ratio, behaviour))

    def _error_ratio(self, deployment: str, segment: str, usual: float, now: float) -> float:
        for key in ((deployment, segment), (deployment, "")):
            fault = self.faults.get(key)
            if fault and fault[1] > now:
                return fault[0]
        return usual

    def set_fault(
        self, deployment: str, error_ratio: float, seconds: float, now: float, segment: str = ""
    ) -> None:
        """Make `deployment` (only its `segment`'s requests, if given) fail at `error_ratio`
        for `seconds` from `now` (monotonic)."""
        if segment and segment not in self.segments:
            raise ValueError(f"no segment {segment}")
        with self.lock:
            self.faults[(deployment, segment)] = (error_ratio, now + seconds)

    def active_faults(self, now: float) -> list[dict]:
        """The faults still running at `now`, forgetting the others."""
        with self.lock:
            self.faults = {key: f for key, f in self.faults.items() if f[1] > now}
            faults = []
            for (name, segment), (ratio, until) in sorted(self.faults.items()):
                fault = {"deployment": name, "error_ratio": ratio, "remaining_seconds": until - now}
                faults.append({**fault, "segment": segment} if segment else fault)
            return faults

    def collect(self):
        """The metric families (prometheus_client's collector protocol)."""
        names = ["namespace", "deployment", "service", "pod_template_hash"]
        names += ["segment"] if self.segmented else []
        requests = CounterMetricFamily(
            "demo_requests", "Simulated requests answered, by status code.", labels=[*names, "code"]
        )
        latency = HistogramMetricFamily(
            "demo_request_duration_seconds", "Simulated request duration.", labels=names
        )
        with self.lock:
            for (deployment, service, revision, segment), series in sorted(self.series.items()):
                labels = [self.namespace, deployment, service, revision]
                labels += [segment] if self.segmented else []
                for code, count in sorted(series.codes.items()):
                    requests.add_metric([*labels, code], count)
                buckets, below = [], 0.0
                for le, count in zip(BUCKETS, series.buckets, strict=False):
                    below += count
                    buckets.append((floatToGoString(le), below))
                buckets.append(("+Inf", below + series.buckets[-1]))
                latency.add_metric(labels, buckets, series.seconds)
        yield requests
        yield latency


class DemoProcess:
    """The demo service as its own process (for tests and game days), stopped by pid."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        workdir: Path,
        *,
        rate: float = 100.0,
        port: int | None = None,
        noise: int | None = None,
        segments: dict[str, float] | None = None,
    ):
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.workdir = Path(workdir)
        self.rate = rate
        self.port = port or free_port()
        self.noise = noise
        self.segments = dict(segments) if segments else None
        if self.segments:
            check_segments(self.segments)  # a bad one fails here, not in the child
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of its HTTP API."""
        return f"http://{self.address}"

    @property
    def log(self) -> Path:
        """Where its stdout and stderr go."""
        return self.workdir / "demo.log"

    def start(self, timeout: float = 30.0) -> DemoProcess:
        """Launch it and wait until /metrics answers."""
        args = [
            sys.executable,
            "-m",
            "gameday.demoserver",
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={self.namespace}",
            f"--port={self.port}",
            f"--rate={self.rate!r}",
        ]
        if self.noise is not None:
            args.append(f"--noise={int(self.noise)}")
        if self.segments:
            weights = ",".join(f"{name}={weight!r}" for name, weight in self.segments.items())
            args.append(f"--segments={weights}")
        # The child imports gameday (and testbed), so it must find the repository.
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self.process = launch(args, self.log, env={**os.environ, "PYTHONPATH": path})
        wait_ready(self.process, self._answers, name="demo service", log=self.log, timeout=timeout)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=1) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def fault(
        self, deployment: str, error_ratio: float, seconds: float, segment: str | None = None
    ) -> list[dict]:
        """POST /control: fail `deployment` (only its `segment`, if given) at `error_ratio`
        for `seconds`; the active faults."""
        body = {"deployment": deployment, "error_ratio": error_ratio, "seconds": seconds}
        if segment is not None:
            body["segment"] = segment
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{self.url}/control",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return json.load(response)["faults"]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        terminate(self.process)

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
