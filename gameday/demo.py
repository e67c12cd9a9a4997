"""The game day's demo service: simulated traffic whose health follows the deployed image.

It answers no real requests. Every 0.5 s it lists the Ready pods labelled
`demo.backstop.io/service` in one namespace; every 0.25 s it counts the requests those pods
would have answered since the last step. Each service (the label's value) gets `--rate`
requests per second, split evenly over its Ready pods, so a 1-pod canary beside 9 stable
pods gets 10%. A pod's 5xx ratio and latency follow its image tag (see BEHAVIOURS); its
Deployment is its `app` label. Counting is deterministic: each step adds exactly
rate * seconds requests, of which exactly ratio * requests fail, so counters are fractional
and their rates are flat rather than jumping by whole requests (a 10 request/s canary at
0.1% would otherwise show a 1% ratio whenever its one failure per 100 s is in the window).

HTTP on 127.0.0.1 only, without authentication (a loopback test service):
  GET  /metrics  demo_requests_total{namespace,deployment,service,pod_template_hash,code}
                 (code "200"/"500") and the histogram
                 demo_request_duration_seconds{namespace,deployment,service,pod_template_hash};
                 `pod_template_hash` is the revision of the pods that answered (their
                 pod-template-hash, controller-revision-hash or rollouts-pod-template-hash
                 label), so a revision can be told from another; sums over it are the
                 workload's
  POST /control  {"deployment": "checkout", "error_ratio": 0.5, "seconds": 5}: that
                 Deployment's pods fail at that ratio for that long (a fault without a rollout)
  GET  /control  the active faults

Run: `python -m gameday.demo --kubeconfig PATH --namespace NS --port PORT [--rate 100]`;
tests and game days start it as a process with DemoProcess.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubernetes import client, config
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from cli.localredis import free_port
from testbed.processes import launch, terminate, wait_ready

SERVICE_LABEL = "demo.backstop.io/service"
# A pod's revision, by the label its controller gives it (Deployment, StatefulSet or
# DaemonSet, Argo Rollout).
REVISION_LABELS = ("pod-template-hash", "controller-revision-hash", "rollouts-pod-template-hash")
DEPLOYMENT_LABEL = "app"
POLL_SECONDS = 0.5
TICK_SECONDS = 0.25
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds; +Inf is added on exposition
MAX_FAULT_SECONDS = 3600
MAX_BODY_BYTES = 64 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("backstop.gameday.demo")


@dataclass(frozen=True)
class Behaviour:
    """How a pod's requests go: the share answered 500, the share that is slow, durations."""

    error_ratio: float
    slow_ratio: float = 0.0
    fast_seconds: float = 0.05
    slow_seconds: float = 2.5


# Image tag suffix → behaviour; the first suffix the tag ends with wins, else DEFAULT_BEHAVIOUR.
BEHAVIOURS: dict[str, Behaviour] = {
    "-errors": Behaviour(error_ratio=0.05),
    "-slow": Behaviour(error_ratio=0.001, slow_ratio=0.10),
}
DEFAULT_BEHAVIOUR = Behaviour(error_ratio=0.001)


def image_tag(image: str) -> str:
    """The tag of an image reference, "" if none (a registry's port or a digest is no tag)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def behaviour_for(image: str) -> Behaviour:
    """The behaviour of pods running `image`."""
    tag = image_tag(image)
    found = (b for suffix, b in BEHAVIOURS.items() if tag.endswith(suffix))
    return next(found, DEFAULT_BEHAVIOUR)


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


@dataclass
class Series:
    """What one (deployment, service) has answered so far; every number only grows."""

    codes: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0})
    durations: dict[float, float] = field(default_factory=lambda: defaultdict(float))


class Traffic:
    """The simulation: serving pods and elapsed time in, Prometheus metrics out. Thread-safe."""

    def __init__(self, namespace: str, rate: float):
        self.namespace = namespace
        self.rate = rate
        self.series: dict[tuple[str, str, str], Series] = {}
        self.faults: dict[str, tuple[float, float]] = {}  # deployment → (ratio, until)
        self.lock = threading.Lock()

    def advance(self, pods: Iterable[Pod], seconds: float, now: float) -> None:
        """Count what `pods` answered in the last `seconds`; `now` (monotonic) ends faults."""
        pods = list(pods)
        per_service = Counter(pod.service for pod in pods)
        with self.lock:
            for pod in pods:
                requests = self.rate * seconds / per_service[pod.service]
                behaviour = behaviour_for(pod.image)
                ratio = self._error_ratio(pod.deployment, behaviour, now)
                key = (pod.deployment, pod.service, pod.revision)
                series = self.series.setdefault(key, Series())
                series.codes["500"] += requests * ratio
                series.codes["200"] += requests * (1 - ratio)
                series.durations[behaviour.fast_seconds] += requests * (1 - behaviour.slow_ratio)
                series.durations[behaviour.slow_seconds] += requests * behaviour.slow_ratio

    def _error_ratio(self, deployment: str, behaviour: Behaviour, now: float) -> float:
        fault = self.faults.get(deployment)
        return fault[0] if fault and fault[1] > now else behaviour.error_ratio

    def set_fault(self, deployment: str, error_ratio: float, seconds: float, now: float) -> None:
        """Make `deployment` fail at `error_ratio` for `seconds` from `now` (monotonic)."""
        with self.lock:
            self.faults[deployment] = (error_ratio, now + seconds)

    def active_faults(self, now: float) -> list[dict]:
        """The faults still running at `now`, forgetting the others."""
        with self.lock:
            self.faults = {name: f for name, f in self.faults.items() if f[1] > now}
            return [
                {"deployment": name, "error_ratio": ratio, "remaining_seconds": until - now}
                for name, (ratio, until) in sorted(self.faults.items())
            ]

    def collect(self):
        """The metric families (prometheus_client's collector protocol)."""
        requests = CounterMetricFamily(
            "demo_requests",
            "Simulated requests answered, by status code.",
            labels=["namespace", "deployment", "service", "pod_template_hash", "code"],
        )
        latency = HistogramMetricFamily(
            "demo_request_duration_seconds",
            "Simulated request duration.",
            labels=["namespace", "deployment", "service", "pod_template_hash"],
        )
        with self.lock:
            for (deployment, service, revision), series in sorted(self.series.items()):
                labels = [self.namespace, deployment, service, revision]
                for code, count in sorted(series.codes.items()):
                    requests.add_metric([*labels, code], count)
                durations = series.durations.items()
                buckets = [
                    (floatToGoString(le), sum(n for took, n in durations if took <= le))
                    for le in BUCKETS
                ]
                buckets.append(("+Inf", sum(n for _, n in durations)))
                latency.add_metric(labels, buckets, sum(took * n for took, n in durations))
        yield requests
        yield latency


def parse_fault(body: bytes) -> tuple[str, float, float]:
    """Validate a POST /control body into (deployment, error_ratio, seconds); ValueError if bad."""
    try:
        data = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise ValueError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    if unknown := sorted(set(data) - {"deployment", "error_ratio", "seconds"}):
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    deployment, ratio, seconds = (
        data.get("deployment"),
        data.get("error_ratio"),
        data.get("seconds"),
    )
    if not isinstance(deployment, str) or not 0 < len(deployment) <= 253:
        raise ValueError("deployment must be a Deployment name")
    if not _number(ratio) or not 0 <= ratio <= 1:
        raise ValueError("error_ratio must be a number from 0 to 1")
    if not _number(seconds) or not 0 < seconds <= MAX_FAULT_SECONDS:
        raise ValueError(f"seconds must be a number above 0, at most {MAX_FAULT_SECONDS}")
    return deployment, float(ratio), float(seconds)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_PLAIN_0_0_4)
        elif path == "/control":
            self._json(200, {"faults": self.server.traffic.active_faults(time.monotonic())})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/control":
            self._json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                raise ValueError(f"the body must be at most {MAX_BODY_BYTES} bytes")
            deployment, ratio, seconds = parse_fault(self.rfile.read(length))
        except ValueError as error:
            self._json(400, {"error": str(error)})
            return
        now = time.monotonic()
        self.server.traffic.set_fault(deployment, ratio, seconds, now)
        log.info("fault: %s answers %g of its requests 500 for %g s", deployment, ratio, seconds)
        self._json(200, {"faults": self.server.traffic.active_faults(now)})

    def _json(self, status: int, document: dict) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # a line per scrape would drown the log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    traffic: Traffic
    registry: CollectorRegistry


class DemoService:
    """The service in this process: a pod poller, a traffic ticker and an HTTP server."""

    def __init__(self, kubeconfig: Path, namespace: str, port: int = 0, rate: float = 100.0):
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.port = port
        self.traffic = Traffic(namespace, rate)
        self.pods: tuple[Pod, ...] = ()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: _Server | None = None
        self.api: client.ApiClient | None = None

    @property
    def url(self) -> str:
        """Base URL (the bound port, once started)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> DemoService:
        """Bind, then poll, count and serve in background threads."""
        self.api = config.new_client_from_config(str(self.kubeconfig))  # fails fast if bad
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.traffic = self.traffic
        self.server.registry = CollectorRegistry()
        self.server.registry.register(self.traffic)
        for target in (self._poll, self._tick, self.server.serve_forever):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads and close the socket and the API client."""
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self.threads:
            thread.join()
        if self.api is not None:
            self.api.close()

    def _poll(self) -> None:
        """Refresh the serving pods; on an API error keep the last ones (and say so once)."""
        core = client.CoreV1Api(self.api)
        failing = ""
        while True:
            try:
                found = core.list_namespaced_pod(
                    self.namespace, label_selector=SERVICE_LABEL, _request_timeout=5
                )
                self.pods = tuple(serving_pods(found.items))
                failing = ""
            except Exception as error:  # the service outlives API hiccups, as a real one would
                text = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
                if text != failing:
                    log.warning(
                        "listing pods failed, keeping the last %d: %s", len(self.pods), text
                    )
                failing = text
            if self.stopping.wait(POLL_SECONDS):
                return

    def _tick(self) -> None:
        # The measured time since the last step, not TICK_SECONDS: a late step adds more, so
        # the rate stays exact.
        last = time.monotonic()
        while not self.stopping.wait(TICK_SECONDS):
            now = time.monotonic()
            self.traffic.advance(self.pods, now - last, now)
            last = now


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
    ):
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.workdir = Path(workdir)
        self.rate = rate
        self.port = port or free_port()
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
            "gameday.demo",
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={self.namespace}",
            f"--port={self.port}",
            f"--rate={self.rate!r}",
        ]
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

    def fault(self, deployment: str, error_ratio: float, seconds: float) -> list[dict]:
        """POST /control: fail `deployment` at `error_ratio` for `seconds`; the active faults."""
        body = {"deployment": deployment, "error_ratio": error_ratio, "seconds": seconds}
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


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    """Process entry point: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m gameday.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", type=Path, required=True, help="cluster to read pods from")
    parser.add_argument("--namespace", required=True, help="namespace of the demo pods")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument(
        "--rate", type=_positive, default=100.0, help="requests per second per service"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service = DemoService(args.kubeconfig, args.namespace, args.port, args.rate).start()
    log.info(
        "demo service on %s: pods of namespace %s, %g requests/s per service",
        service.url,
        args.namespace,
        args.rate,
    )
    while not stop.wait(1.0):
        pass
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
