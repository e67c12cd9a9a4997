"""Prometheus metrics of Backstop itself, safe under gunicorn's multiple processes.

With PROMETHEUS_MULTIPROC_DIR set (the gunicorn config sets it), every worker writes its
samples to files there and /metrics aggregates them; otherwise the default registry is used.
"""

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

WEBHOOK_REQUESTS = Counter(
    "backstop_webhook_requests_total",
    "Webhook requests by source and HTTP status",
    ["source", "code"],
)
ALERTS_RECEIVED = Counter(
    "backstop_alerts_received_total", "Alerts received, by source and status", ["source", "status"]
)
ALERT_DUPLICATES = Counter(
    "backstop_alert_duplicates_total",
    "Repeated notifications of an episode, not processed again",
    ["source"],
)
WEBHOOK_DURATION = Histogram(
    "backstop_webhook_duration_seconds",
    "Webhook handling time",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def render() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


@functools.cache
def child(metric, *labels: str):
    """A metric's labelled child, looked up once: `labels()` locks and hashes every call."""
    return metric.labels(*labels)
