"""Prometheus metrics of Backstop itself, safe under gunicorn's multiple processes.

With PROMETHEUS_MULTIPROC_DIR set (the gunicorn config sets it), every worker writes its
samples to files there and /metrics aggregates them; otherwise the default registry is used.

What workers and the watcher do is read from Redis at scrape time (StateCollector), not
counted in their own processes: RQ runs each job in a short-lived child, and any receiver
replica then reports the same, complete picture.
"""

import functools
import os
from datetime import timedelta

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError

from core import registries
from core.records import utcnow

# This process's id, kept current across forks. In multiprocess mode every sample written
# asks for the process identifier, to notice a fork; os.getpid is a system call each time,
# 6 % of a webhook's time in the receiver (five samples per webhook; py-spy, in-process).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _process_identifier() -> int:
    return _PID[0]


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Before any metric exists: every sample of this process must use the same value class.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)

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


RECENT = timedelta(hours=1)


class StateCollector:
    """Backstop's state from Redis, as gauges: recent rollbacks and decisions, queues,
    workers, switches, the watcher's heartbeat. `backstop_redis_up` 0 when Redis is not."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        up = GaugeMetricFamily("backstop_redis_up", "1 when Redis answered this scrape")
        try:
            families = list(self._state())
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _state(self):
        store, now = self.store, utcnow()
        rollbacks = GaugeMetricFamily(
            "backstop_rollbacks_last_hour",
            "Rollbacks started in the last hour, by their status now",
            labels=["status"],
        )
        for status, count in store.rollbacks.counts(since=now - RECENT).items():
            rollbacks.add_metric([status], count)
        yield rollbacks
        decisions = GaugeMetricFamily(
            "backstop_decisions_last_hour",
            "Decisions made in the last hour, by their outcome now",
            labels=["outcome"],
        )
        for outcome, count in store.decisions.counts(since=now - RECENT).items():
            decisions.add_metric([outcome], count)
        yield decisions
        jobs = GaugeMetricFamily(
            "backstop_queue_jobs", "RQ jobs by queue and registry", labels=["queue", "registry"]
        )
        for queue, row in registries.counts(store.redis).items():
            for registry, count in row.items():
                jobs.add_metric([queue, registry], count)
        yield jobs
        yield GaugeMetricFamily(
            "backstop_rq_workers", "Live RQ workers", value=len(registries.workers(store.redis))
        )
        yield GaugeMetricFamily(
            "backstop_automation_paused",
            "1 while automation is paused globally",
            value=int(store.automation.paused(None) is not None),
        )
        yield GaugeMetricFamily(
            "backstop_paused_workloads",
            "Workloads paused one by one",
            value=len(store.automation.paused_workloads()),
        )
        circuit = store.automation.circuit(now=now, window=RECENT)
        yield GaugeMetricFamily(
            "backstop_circuit_open",
            "1 while the circuit breaker is open",
            value=int(circuit.get("state") == "open"),
        )
        beat = store.rollouts.last_heartbeat()
        if beat is not None:  # absent: no watcher within the hour (alert on absent())
            yield GaugeMetricFamily(
                "backstop_watcher_heartbeat_age_seconds",
                "Seconds since the deployment watcher last said it was alive",
                value=max(0.0, (now - beat).total_seconds()),
            )


def render(store=None) -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    if store is not None:
        registry.register(StateCollector(store))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Default:
    """The process's own default registry, as one collector (single-process mode)."""

    def collect(self):
        yield from REGISTRY.collect()


@functools.cache
def child(metric, *labels: str):
    """A metric's labelled child, looked up once: `labels()` locks and hashes every call."""
    return metric.labels(*labels)
