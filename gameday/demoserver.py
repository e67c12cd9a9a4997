"""The demo service's process (gameday/demo.py describes the service): a pod poller, a
traffic ticker and the HTTP API, on 127.0.0.1 only.

Run: `python -m gameday.demoserver --kubeconfig PATH --namespace NS --port PORT
[--rate 100] [--segments ios=0.3,android=0.3,web=0.4] [--noise SEED]`; DemoProcess
(gameday/demo.py) starts it so for tests and game days.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubernetes import client, config
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from gameday.demo import SERVICE_LABEL, Pod, Traffic, parse_segments, serving_pods

POLL_SECONDS = 0.5
TICK_SECONDS = 0.25
MAX_FAULT_SECONDS = 3600
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger("backstop.gameday.demo")


def parse_fault(body: bytes, segments: Collection[str] = ()) -> tuple[str, float, float, str]:
    """Validate a POST /control body into (deployment, error_ratio, seconds, segment), the
    segment "" for the whole Deployment; ValueError if bad. `segments`: the known ones."""
    try:
        data = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise ValueError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    if unknown := sorted(set(data) - {"deployment", "error_ratio", "seconds", "segment"}):
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
    segment = data.get("segment", "")
    if "segment" in data and (not isinstance(segment, str) or segment not in segments):
        known = ", ".join(sorted(segments)) or "none: the service runs without --segments"
        raise ValueError(f"segment must be one of the service's segments ({known})")
    return deployment, float(ratio), float(seconds), segment


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
        traffic = self.server.traffic
        segments = [name for name in traffic.segments if name]
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                raise ValueError(f"the body must be at most {MAX_BODY_BYTES} bytes")
            deployment, ratio, seconds, segment = parse_fault(self.rfile.read(length), segments)
        except ValueError as error:
            self._json(400, {"error": str(error)})
            return
        now = time.monotonic()
        traffic.set_fault(deployment, ratio, seconds, now, segment)
        whose = f"{deployment} (segment {segment})" if segment else deployment
        log.info("fault: %s answers %g of its requests 500 for %g s", whose, ratio, seconds)
        self._json(200, {"faults": traffic.active_faults(now)})

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

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        port: int = 0,
        rate: float = 100.0,
        *,
        segments: dict[str, float] | None = None,
        noise: int | None = None,
    ):
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.port = port
        self.traffic = Traffic(namespace, rate, segments=segments, noise=noise)
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


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _segments(text: str) -> dict[str, float]:
    try:
        return parse_segments(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Process entry point: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m gameday.demoserver",
        description="The game day's demo service: simulated traffic whose health follows "
        "the deployed image (gameday/demo.py).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True, help="cluster to read pods from")
    parser.add_argument("--namespace", required=True, help="namespace of the demo pods")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument(
        "--rate", type=_positive, default=100.0, help="requests per second per service"
    )
    parser.add_argument(
        "--segments",
        type=_segments,
        help="client segments by weight, e.g. ios=0.3,android=0.3,web=0.4 (a `segment` label)",
    )
    parser.add_argument(
        "--noise", type=int, metavar="SEED", help="seeded realistic scatter (default: flat)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service = DemoService(
        args.kubeconfig,
        args.namespace,
        args.port,
        args.rate,
        segments=args.segments,
        noise=args.noise,
    ).start()
    log.info(
        "demo service on %s: pods of namespace %s, %g requests/s per service%s%s",
        service.url,
        args.namespace,
        args.rate,
        f", segments {args.segments}" if args.segments else "",
        f", noise seeded {args.noise}" if args.noise is not None else "",
    )
    while not stop.wait(1.0):
        pass
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
