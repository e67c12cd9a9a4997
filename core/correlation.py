"""Correlation: which workload an alert is about, and which rollout explains it.

Alert → workload: a policy service's explicit workload first; otherwise label conventions:
`namespace` plus one of `deployment`, `statefulset`, `daemonset`, `rollout` (or a label
from `correlation.workload_labels`, naming a Deployment), and `cluster` when present.

Workload → rollout: the rollouts that started within `lookback` before the episode's
`startsAt` (allowing `clock_skew` after it). A rollback by Backstop supersedes what came
before it: only it and later rollouts remain candidates, and it stays one only when
nothing followed it. One candidate is a match; several are ambiguous; none, while a
rollout started after the episode began, means the episode predates the deployment and
was not caused by it. A workload's first revision (its creation) has nothing to return
to: it never makes a rollback ambiguous, and when it is the only candidate the outcome is
`first_revision`.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from config.durations import format_duration
from config.policy import DecisionDefaults, Policy, ServicePolicy
from core import markup
from core.models import Workload
from core.records import Rollout

KIND_LABELS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "daemonset": "DaemonSet",
    "rollout": "Rollout",
}


def workload_for(labels: dict[str, str], policy: Policy, service: ServicePolicy | None):
    """The workload an alert names, or None when it names none."""
    if service is not None and service.workload is not None:
        ref = service.workload
        return Workload(ref.cluster or policy.cluster, ref.namespace, ref.kind, ref.name)
    namespace = labels.get("namespace")
    if not namespace:
        return None
    cluster = labels.get("cluster") or policy.cluster
    for label, kind in KIND_LABELS.items():
        if labels.get(label):
            return _real(Workload(cluster, namespace, kind, labels[label]))
    for label in policy.correlation.workload_labels:
        if labels.get(label):
            return _real(Workload(cluster, namespace, "Deployment", labels[label]))
    return None


def _real(workload: Workload) -> Workload | None:
    """None for names no Kubernetes object can have: with invisible characters (zero-width,
    bidirectional) they would only look like a real workload's (decision `no_workload`)."""
    return None if markup.has_invisible(workload.key) else workload


Status = Literal["match", "none", "predates", "ambiguous", "first_revision"]


@dataclass
class Correlation:
    """The link (or its absence) between an episode and a rollout, with the evidence."""

    status: Status
    rollout: Rollout | None = None
    candidates: list[Rollout] = field(default_factory=list)
    confidence: str = ""
    evidence: dict = field(default_factory=dict)


def correlate(starts_at: datetime, rollouts: list[Rollout], timing: DecisionDefaults):
    """Find the rollout that explains an episode that started at `starts_at`."""
    earliest = starts_at - timing.lookback
    latest = starts_at + timing.clock_skew
    candidates = _supersede(
        sorted(
            (r for r in rollouts if earliest <= r.started_at <= latest),
            key=lambda r: r.started_at,
            reverse=True,
        )
    )
    evidence = {
        "episode_started": starts_at.isoformat(),
        "window": [earliest.isoformat(), latest.isoformat()],
        "lookback": format_duration(timing.lookback),
        "clock_skew": format_duration(timing.clock_skew),
        "candidates": [_brief(r, starts_at) for r in candidates],
    }
    if not candidates:
        later = [r for r in rollouts if r.started_at > latest]
        if later:
            evidence["later_rollouts"] = [_brief(r, starts_at) for r in later[:5]]
            return Correlation("predates", evidence=evidence)
        return Correlation("none", evidence=evidence)
    revertible = [r for r in candidates if not _is_creation(r)]
    if not revertible:
        return Correlation("first_revision", candidates=candidates, evidence=evidence)
    newest = revertible[0]
    if len(revertible) > 1:
        return Correlation("ambiguous", candidates=revertible, evidence=evidence)
    # The alert began after the rollout started: high confidence; within the clock-skew
    # allowance before it: medium.
    confidence = "high" if newest.started_at <= starts_at else "medium"
    return Correlation(
        "match", rollout=newest, candidates=candidates, confidence=confidence, evidence=evidence
    )


def _is_creation(rollout: Rollout) -> bool:
    """The workload's first revision: there is no earlier one to roll back to."""
    return rollout.revision == "1" and rollout.previous_revision is None


def _supersede(newest_first: list[Rollout]) -> list[Rollout]:
    """Drop what Backstop's latest rollback reverted, and the rollback once it was followed."""
    for index, rollout in enumerate(newest_first):
        if rollout.by_backstop:
            return newest_first[:index] or [rollout]
    return newest_first


def _brief(rollout: Rollout, starts_at: datetime) -> dict:
    lead = (starts_at - rollout.started_at).total_seconds()
    return {
        "id": rollout.id,
        "revision": rollout.revision,
        "started_at": rollout.started_at.isoformat(),
        "seconds_before_alert": round(lead),
        "by_backstop": rollout.by_backstop,
    }
