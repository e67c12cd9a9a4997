"""After the revert: wait for the rollout, then verify that the prior version is healthy.

Rollout completion uses the kind's own rules (core/revisions.is_complete). KPI
verification waits `settle`, then evaluates each of the service's verify queries every
`interval` for `window` against Prometheus: healthy only if every series of every query
holds at every evaluation.
Without Prometheus the rollout's health is all Backstop can vouch for, and the result says
so (`mode: rollout_only`), never "fully verified".
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.policy import VerifyPolicy
from core.integrations.kubernetes import Kube
from core.integrations.prometheus import Prometheus
from core.kpis import evaluate, holds
from core.models import Workload
from core.revisions import is_complete

POLL_SECONDS = 1.0


@dataclass
class Waiting:
    """Time, for the loops here: injectable so tests need not wait for real."""

    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    heartbeat: Callable[[], None] = lambda: None

    def pause(self, seconds: float) -> None:
        self.heartbeat()
        self.sleep(seconds)


def wait_for_rollout(
    kube: Kube,
    workload: Workload,
    *,
    timeout: timedelta,
    waiting: Waiting,
    aborted: bool = False,
) -> tuple[bool, dict]:
    """Wait until the workload's rollout is complete (for an Argo Rollout only `aborted`,
    until it is back on its stable pods); False when the deadline passes."""
    deadline = waiting.clock() + timeout
    while True:
        obj = kube.get(workload.kind, workload.namespace, workload.name)
        status = obj.get("status", {})
        done = _back_on_stable(kube, obj) if aborted else is_complete(workload.kind, obj)
        if done:
            return True, {"workload_status": _brief(status)}
        if waiting.clock() >= deadline:
            return False, {
                "workload_status": _brief(status),
                "timeout_s": int(timeout.total_seconds()),
            }
        waiting.pause(POLL_SECONDS)


def _back_on_stable(kube: Kube, rollout: dict) -> bool:
    """An aborted Argo Rollout stays Degraded with its bad template; it is done when its
    stable ReplicaSet (status.stableRS, by rollouts-pod-template-hash) has every replica
    the Rollout wants available again."""
    status = rollout.get("status", {})
    stable = status.get("stableRS")
    if not status.get("abort") or not stable:
        return False
    wanted = rollout.get("spec", {}).get("replicas", 1)
    return any(
        rs["metadata"].get("labels", {}).get("rollouts-pod-template-hash") == stable
        and rs.get("status", {}).get("availableReplicas", 0) >= wanted
        for rs in kube.owned("ReplicaSet", rollout)
    )


def _brief(status: dict) -> dict:
    keep = (
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "currentRevision",
        "updateRevision",
        "phase",
        "desiredNumberScheduled",
        "updatedNumberScheduled",
        "numberAvailable",
    )
    return {k: status[k] for k in keep if k in status}


def verify_kpis(
    prometheus: Prometheus | None,
    policy: VerifyPolicy,
    *,
    waiting: Waiting,
    resolved: Callable[[], bool],
) -> dict:
    """Evaluate the verify queries over the window; the result says whether they held."""
    if prometheus is None:
        return {
            "mode": "rollout_only",
            "held": None,
            "detail": "PROMETHEUS_URL is not set: only the rollout's health was checked",
        }
    if not policy.queries and not policy.wait_for_resolved:
        return {
            "mode": "rollout_only",
            "held": None,
            "detail": "no verify queries configured: only the rollout's health was checked",
        }
    results: dict[str, dict[str, Any]] = {
        q.name: {
            "query": q.query,
            "comparison": q.comparison,
            "threshold": q.threshold,
            "unit": q.unit,
            "samples": [],
            "held": None,
        }
        for q in policy.queries
    }
    # Rates over a range still contain the bad version's samples just after the revert.
    settle_until = waiting.clock() + policy.settle
    while waiting.clock() < settle_until:
        left = (settle_until - waiting.clock()).total_seconds()
        waiting.pause(min(left, policy.interval.total_seconds()))  # heartbeats in between
    end = waiting.clock() + policy.window
    while True:
        now = waiting.clock()
        for query in policy.queries:
            record = results[query.name]
            sample = evaluate(prometheus, query.query)
            record["samples"].append({"at": now.isoformat(), **sample})
            values = sample.get("values")
            if values is None:
                continue
            if not holds(query, values):
                record["held"] = False
                return {
                    "mode": "prometheus",
                    "held": False,
                    "queries": results,
                    "detail": f"{query.name} broke its threshold: {values} "
                    f"{query.comparison} {query.threshold} is false",
                }
            record["held"] = True if record["held"] is None else record["held"]
        if now >= end:
            break
        waiting.pause(policy.interval.total_seconds())
    silent = [name for name, record in results.items() if record["held"] is None]
    if silent:
        return {
            "mode": "prometheus",
            "held": False,
            "queries": results,
            "detail": f"no data for {', '.join(silent)} during the window",
        }
    if policy.wait_for_resolved and not resolved():
        return {
            "mode": "prometheus",
            "held": False,
            "queries": results,
            "detail": "the kill-switch alert did not resolve within the window",
        }
    return {
        "mode": "prometheus",
        "held": True,
        "queries": results,
        "detail": "every verify query held for the whole window",
    }
