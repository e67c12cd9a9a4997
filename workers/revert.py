"""The exact patch that reverts a workload to a target revision, as `kubectl rollout undo`.

Pure functions over the API's JSON documents. Every patch carries the object's
resourceVersion, so a concurrent change makes the API answer 409 instead of Backstop
overwriting it (the job then retries from a fresh read).
"""

import copy
from dataclasses import dataclass

from core.owners import FLUX_RECONCILE, FROZEN_BY, HELM_ANNOTATIONS, TRACKING_ID
from core.revisions import REVISION_ANNOTATION, TEMPLATE_HASH, pod_hash

# Annotations that belong to the Deployment itself, never copied from a ReplicaSet (kubectl's
# list of annotations to skip on undo).
OWN_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "rollout.argoproj.io/revision",
    }
)
# The owners' marks (core/owners.py), Flux's per-object off switch and Backstop's own freeze
# mark describe the workload as it is now, not a revision: a revert keeps the live ones
# (never copies a ReplicaSet's), so the owner still knows its workload and a freeze put on
# just before holds.
OWNER_ANNOTATIONS = frozenset({TRACKING_ID, *HELM_ANNOTATIONS, FLUX_RECONCILE, FROZEN_BY})


@dataclass(frozen=True)
class Patch:
    """A patch to send: its type (json, strategic, merge), body, and whether to /status."""

    patch_type: str
    body: dict | list
    status: bool = False


def revert_patches(kind: str, owner: dict, target: dict, argo_undo: bool) -> list[Patch]:
    """The patches, in order, that revert `owner` (a workload of `kind`) to `target` (its
    ReplicaSet or ControllerRevision): an Argo Rollout is aborted, and its template undone
    too when `argo_undo` is set."""
    if kind == "Deployment":
        return [template_revert("Deployment", owner, target)]
    if kind == "Rollout":
        return [argo_abort(), *([template_revert("Rollout", owner, target)] if argo_undo else [])]
    return [controller_revision_revert(owner, target)]


def template_revert(kind: str, owner: dict, target_rs: dict) -> Patch:
    """Deployment or Argo Rollout: put the target ReplicaSet's template back (JSON patch)."""
    template = copy.deepcopy(target_rs["spec"]["template"])
    template.get("metadata", {}).get("labels", {}).pop(TEMPLATE_HASH[kind], None)
    own = owner["metadata"].get("annotations") or {}
    copied = target_rs["metadata"].get("annotations") or {}
    live = OWN_ANNOTATIONS | OWNER_ANNOTATIONS
    annotations = {k: v for k, v in own.items() if k in live}
    annotations.update({k: v for k, v in copied.items() if k not in live})
    return Patch(
        "json",
        [
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": owner["metadata"]["resourceVersion"],
            },
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ],
    )


def controller_revision_revert(owner: dict, target: dict) -> Patch:
    """StatefulSet or DaemonSet: apply the target ControllerRevision's data (strategic merge)."""
    body = copy.deepcopy(target.get("data") or {})
    body.setdefault("metadata", {})["resourceVersion"] = owner["metadata"]["resourceVersion"]
    return Patch("strategic", body)


def argo_abort() -> Patch:
    """Argo Rollouts: abort the update through the status subresource."""
    return Patch("merge", {"status": {"abort": True}}, status=True)


def revision_of(kind: str, child: dict) -> str | None:
    """A ReplicaSet's or ControllerRevision's revision number, as a string."""
    if kind in REVISION_ANNOTATION:
        return (child["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION[kind])
    revision = child.get("revision")
    return None if revision is None else str(revision)


def template_hash(kind: str, child: dict) -> str:
    """What identifies a revision's pods (core/revisions.py pod_hash)."""
    return pod_hash(kind, child)


def pod_template(kind: str, child: dict) -> dict:
    """The pod template a revision runs."""
    if kind in TEMPLATE_HASH:
        return child["spec"]["template"]
    return (child.get("data") or {}).get("spec", {}).get("template", {})
