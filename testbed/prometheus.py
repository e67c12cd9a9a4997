"""A real Prometheus (Debian's) on loopback scraping a tiny in-process exporter, for tests."""

import json
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core.errors import TransientError
from core.integrations.prometheus import Prometheus
from testbed.kube.procs import free_port
from testbed.processes import launch, terminate, wait_ready


def prometheus_binary() -> str:
    """Debian's prometheus from PATH."""
    if found := shutil.which("prometheus"):
        return found
    raise FileNotFoundError("no Prometheus: apt-get install prometheus")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = self.server.exporter.exposition().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one line per scrape would drown the test output


class Exporter:
    """Serves /metrics with gauges the test sets, on a free loopback port."""

    def __init__(self):
        self.lock = threading.Lock()
        self.gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        """URL of the metrics page."""
        return f"http://{self.address}/metrics"

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge `name{labels}` to `value` from the next scrape on."""
        with self.lock:
            self.gauges.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def exposition(self) -> str:
        """The current gauges in the Prometheus text format."""
        lines = []
        with self.lock:
            for name, series in sorted(self.gauges.items()):
                lines.append(f"# TYPE {name} gauge")
                for labels, value in sorted(series.items()):
                    text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
                    lines.append(f"{name}{{{text}}} {_number(value)}")
        return "".join(line + "\n" for line in lines)

    def start(self) -> "Exporter":
        """Listen on a free loopback port and serve in a background thread."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
        self.server.exporter = self
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> "Exporter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def promtool_binary() -> str:
    """Debian's promtool (from the prometheus package) from PATH."""
    if found := shutil.which("promtool"):
        return found
    raise FileNotFoundError("no promtool: apt-get install prometheus")


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """Write TSDB blocks for the samples of an OpenMetrics file (history in the past) into
    a Prometheus data directory, with `promtool tsdb create-blocks-from openmetrics`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            promtool_binary(),
            *("tsdb", "create-blocks-from", "openmetrics", "--quiet"),
            str(openmetrics),
            str(data_dir),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


class PrometheusServer:
    """One Prometheus scraping `targets` every second, with its own storage, stopped by pid."""

    def __init__(
        self,
        directory: Path,
        targets: list[str],
        *,
        rule_files: list[Path] | None = None,
        alertmanagers: list[str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.directory = Path(directory)
        self.port = free_port()
        self.targets = targets
        self.rule_files = rule_files or []
        self.alertmanagers = alertmanagers or []
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of its HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Where its stdout and stderr go."""
        return self.directory / "prometheus.log"

    @property
    def client(self) -> Prometheus:
        """Backstop's client for this server."""
        return Prometheus(self.url, timeout=2.0)

    def write_config(self) -> Path:
        """Scrape the targets as job "test", evaluate rules every second; JSON is valid YAML."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "test", "static_configs": [{"targets": self.targets}]}],
            "rule_files": [str(path) for path in self.rule_files],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]
            }
        path = self.directory / "prometheus.yml"
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        """Start, wait for /-/ready, then for the first scrape of every target."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            prometheus_binary(),
            f"--config.file={self.write_config()}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # generatorURLs of alerts point here rather than at http://<hostname>:9090.
            f"--web.external-url={self.url}",
            *self.extra_args,
        ]
        self.process = launch(args, self.log)
        try:
            wait_ready(
                self.process, self.client.ready, name="prometheus", log=self.log, timeout=timeout
            )
            self._wait_until_scraping(timeout)
        except BaseException:
            self.stop()  # a failed start must not leave the process running
            raise
        return self

    def _wait_until_scraping(self, timeout: float) -> None:
        # Ready comes within ~0.1s but targets reach the scraper only after ~5s; waiting here
        # lets tests expect a value they set to be queryable a second or two later.
        if self.targets:
            try:
                self.wait_for_value("count(up)", lambda n: n >= len(self.targets), timeout)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"prometheus did not scrape every target: {exc}; see {self.log}"
                ) from None

    def wait_for_value(
        self, expr: str, predicate: Callable[[float], bool], timeout: float = 15.0
    ) -> float:
        """Poll an instant query until its first sample's value satisfies `predicate`."""
        client = self.client
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            try:
                samples = client.query(expr=expr)
            except TransientError as exc:  # e.g. still starting; a bad query raises
                samples, seen = [], exc
            if samples:
                seen = samples[0].value
                if predicate(seen):
                    return seen
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{expr} did not reach the expected value in {timeout}s; last: {seen}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop by pid: SIGTERM, then SIGKILL if it lingers."""
        terminate(self.process)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
