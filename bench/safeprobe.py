"""What P8 (bench/safestate.py) reads outside Backstop: when the bad release began to
serve and when the stable version served alone again (the cluster's Ready pods, as an
endpoints controller sees them), and when Prometheus first found the rule's expression
true (the alert's `activeAt`)."""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from kubernetes import client

from gameday.demo import SERVICE_LABEL, serving_pods

POLL_SECONDS = 0.2
ALERTS_EVERY = 5  # polls: Prometheus's alerts once a second
log = logging.getLogger("backstop.bench.safestate")


@dataclass
class Watched:
    """One service's moments: the bad image's first Ready pod, then the first moment
    every Ready pod runs the stable image again; Prometheus's activeAt for its canary."""

    service: str
    canary: str
    stable_image: str
    onset: datetime | None = None
    safe: datetime | None = None
    active_at: datetime | None = None
    polls: int = 0

    def observe(self, images: list[str], now: datetime) -> None:
        """Update from the images the service's Ready pods run at `now`."""
        self.polls += 1
        bad = [i for i in images if i != self.stable_image]
        if self.onset is None and bad:
            self.onset = now
        elif self.onset is not None and self.safe is None and images and not bad:
            self.safe = now


def prometheus_time(text: str) -> datetime:
    """Prometheus's RFC 3339 time (nanoseconds, 'Z') as an aware datetime."""
    head, _, rest = text.rstrip("Z").partition(".")
    fraction = rest[:6].ljust(6, "0") if rest else "000000"
    return datetime.fromisoformat(f"{head}.{fraction}+00:00")


class SafeStateProbe:
    """A thread polling the cluster every POLL_SECONDS and Prometheus every second."""

    def __init__(self, api: client.ApiClient, namespace: str, prometheus_url: str):
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.prometheus_url = prometheus_url
        self.watched: dict[str, Watched] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="safe-state-probe", daemon=True)

    def watch(self, service: str, canary: str, stable_image: str) -> Watched:
        """Follow one service (call before start)."""
        self.watched[service] = Watched(service, canary, stable_image)
        return self.watched[service]

    def start(self) -> "SafeStateProbe":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            try:
                self._pods()
                if count % ALERTS_EVERY == 0:
                    self._alerts()
            except Exception as error:  # a hiccup costs one poll, not the measurement
                log.warning("probe: %s: %s", type(error).__name__, error)
            count += 1
            self.stopping.wait(POLL_SECONDS)

    def _pods(self) -> None:
        found = self.core.list_namespaced_pod(
            self.namespace, label_selector=SERVICE_LABEL, _request_timeout=5
        )
        now = datetime.now(UTC)
        serving = serving_pods(found.items)
        for name, watched in self.watched.items():
            watched.observe([pod.image for pod in serving if pod.service == name], now)

    def _alerts(self) -> None:
        answer = requests.get(f"{self.prometheus_url}/api/v1/alerts", timeout=2)
        answer.raise_for_status()
        for alert in answer.json()["data"]["alerts"]:
            deployment = alert["labels"].get("deployment")
            for watched in self.watched.values():
                if watched.canary == deployment and watched.active_at is None:
                    watched.active_at = prometheus_time(alert["activeAt"])


def wait_until(condition, timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll `condition` until it is true; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
