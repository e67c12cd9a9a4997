"""Briefs: a workload, ReplicaSet or ControllerRevision cut down to the fields the watcher
reads, and nothing else.

A Deployment as the API sends it is mostly `managedFields` (over half its JSON on a
typical cluster), the last-applied annotation and a pod template the watcher needs only
the images of. The watcher briefs each object as its LIST page or watch event is parsed,
so what it holds is a few hundred bytes per object, whatever the cluster's manifests say.
"""

# Metadata the watcher reads: identity, revision annotations, owner marks (labels and
# annotations, core/owners.py), the child's controller and its creation time.
METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "labels",
    "ownerReferences",
)
# What `kubectl apply` leaves behind: a copy of the whole manifest, read by nobody here.
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# The spec's fields that revisions and completion read (core/revisions.py).
SPEC = ("replicas", "selector", "paused")


def brief(obj: dict) -> dict:
    """The object with only the fields the watcher reads (core/revisions.py, core/owners.py)."""
    metadata = obj.get("metadata") or {}
    kept: dict = {"metadata": {name: metadata[name] for name in METADATA if name in metadata}}
    annotations = metadata.get("annotations")
    if annotations is not None:
        kept["metadata"]["annotations"] = {
            key: value for key, value in annotations.items() if key not in DROPPED_ANNOTATIONS
        }
    if "spec" in obj:
        kept["spec"] = _spec(obj["spec"])
    if "status" in obj:
        kept["status"] = obj["status"]  # small, and completion reads most of it
    if "revision" in obj:
        kept["revision"] = obj["revision"]  # a ControllerRevision's number (not its `data`)
    return kept


def _spec(spec: dict) -> dict:
    kept = {name: spec[name] for name in SPEC if name in spec}
    if "template" in spec:
        kept["template"] = {"spec": _pod_spec((spec["template"] or {}).get("spec") or {})}
    return kept


def _pod_spec(spec: dict) -> dict:
    """The containers' names and images (what a rollout record lists), nothing else."""
    return {
        group: [{"name": c.get("name", ""), "image": c.get("image", "")} for c in spec[group]]
        for group in ("initContainers", "containers")
        if spec.get(group)
    }
