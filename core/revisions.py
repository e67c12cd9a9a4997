"""Revisions of workloads, read from Kubernetes objects (plain JSON dicts), without I/O.

Deployments and Argo Rollouts number their revisions in an annotation on the owner and on
each ReplicaSet; StatefulSets and DaemonSets in ControllerRevisions (`.revision`). A
revision that reuses an older ReplicaSet (an undo) records its history in
`deployment.kubernetes.io/revision-history`; its start is then the time it was observed.
"""

from dataclasses import dataclass
from datetime import datetime

DEPLOYMENT_REVISION = "deployment.kubernetes.io/revision"
DEPLOYMENT_HISTORY = "deployment.kubernetes.io/revision-history"
ARGO_REVISION = "rollout.argoproj.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
TEMPLATE_HASH = {"Deployment": "pod-template-hash", "Rollout": "rollouts-pod-template-hash"}
REVISION_ANNOTATION = {"Deployment": DEPLOYMENT_REVISION, "Rollout": ARGO_REVISION}
# A DaemonSet labels its pods and its ControllerRevisions `controller-revision-hash` with
# the hash alone; a StatefulSet labels its pods with the ControllerRevision's name
# (`<set>-<hash>`).
REVISION_HASH = "controller-revision-hash"


def pod_hash(kind: str, child: dict) -> str:
    """The value of the label that marks a revision's pods (`pod-template-hash`,
    `rollouts-pod-template-hash` or `controller-revision-hash`), from the revision's
    ReplicaSet or ControllerRevision."""
    metadata = child.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if kind in TEMPLATE_HASH:
        return labels.get(TEMPLATE_HASH[kind], "")
    name = metadata.get("name", "")
    if kind == "DaemonSet":
        return labels.get(REVISION_HASH) or name.rpartition("-")[2]
    return name


@dataclass(frozen=True)
class Observed:
    """A workload's current revision as seen in the cluster."""

    revision: str
    previous_revision: str | None
    images: list[str]
    change_cause: str
    started_at: datetime
    template_hash: str
    complete: bool


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API ('2026-11-26T16:22:59Z')."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _annotations(obj: dict) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def images(template: dict) -> list[str]:
    """Container images of a pod template, init containers included."""
    spec = template.get("spec", {})
    containers = spec.get("initContainers", []) + spec.get("containers", [])
    return [c.get("image", "") for c in containers]


def _previous(revisions: list[int], current: int) -> str | None:
    lower = [r for r in revisions if r < current]
    return str(max(lower)) if lower else None


def replica_set_revision(
    kind: str, owner: dict, replica_sets: list[dict], now: datetime, complete: bool
) -> Observed | None:
    """The current revision of a Deployment or Argo Rollout from its ReplicaSets."""
    key = REVISION_ANNOTATION[kind]
    current = _annotations(owner).get(key)
    if not current or not current.isdigit():
        return None  # the controller has not processed it yet
    by_revision = {_annotations(rs).get(key): rs for rs in replica_sets}
    rs = by_revision.get(current)
    if rs is None:
        return None  # the ReplicaSet is not listed yet; the next event will find it
    revisions = [int(r) for r in by_revision if r and r.isdigit()]
    reused = DEPLOYMENT_HISTORY in _annotations(rs)
    created = parse_time(rs["metadata"].get("creationTimestamp"))
    annotations = _annotations(rs)
    return Observed(
        revision=current,
        previous_revision=_previous(revisions, int(current)),
        images=images(rs["spec"].get("template", {})),
        change_cause=annotations.get(CHANGE_CAUSE) or _annotations(owner).get(CHANGE_CAUSE, ""),
        started_at=now if reused or created is None else created,
        template_hash=rs["metadata"].get("labels", {}).get(TEMPLATE_HASH[kind], ""),
        complete=complete,
    )


def controller_revision(
    kind: str, owner: dict, revisions: list[dict], now: datetime, complete: bool
) -> Observed | None:
    """The current revision of a StatefulSet or DaemonSet from its ControllerRevisions."""
    if not revisions:
        return None
    if kind == "StatefulSet":
        name = owner.get("status", {}).get("updateRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == name), None)
    else:
        current = max(revisions, key=lambda r: int(r.get("revision", 0)))
    if current is None:
        return None
    number = int(current.get("revision", 0))
    created = parse_time(current["metadata"].get("creationTimestamp"))
    return Observed(
        revision=str(number),
        previous_revision=_previous([int(r.get("revision", 0)) for r in revisions], number),
        images=images(owner["spec"].get("template", {})),
        change_cause=_annotations(owner).get(CHANGE_CAUSE, ""),
        started_at=created or now,
        template_hash=pod_hash(kind, current),
        complete=complete,
    )


def is_complete(kind: str, obj: dict) -> bool:
    """Whether the workload's rollout finished, by the kind's own rules."""
    spec, status = obj.get("spec", {}), obj.get("status", {})
    generation = obj["metadata"].get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    if kind == "Deployment":
        wanted = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        stalled = any(
            c.get("reason") == "ProgressDeadlineExceeded" for c in status.get("conditions", [])
        )
        return (
            observed
            and not stalled
            and updated == wanted
            and status.get("replicas", 0) == updated
            and status.get("availableReplicas", 0) >= updated
        )
    if kind == "StatefulSet":
        wanted = spec.get("replicas", 1)
        return (
            observed
            and status.get("updatedReplicas", 0) == wanted
            and status.get("readyReplicas", 0) == wanted
            and status.get("currentRevision") == status.get("updateRevision")
        )
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        return (
            observed
            and status.get("updatedNumberScheduled", 0) == desired
            and status.get("numberAvailable", 0) == desired
        )
    if kind == "Rollout":
        return status.get("phase") == "Healthy" or (
            bool(status.get("stableRS")) and status.get("stableRS") == status.get("currentPodHash")
        )
    raise ValueError(f"unknown kind {kind}")
