"""Evidence from the bad revision, captured before the revert makes its pods disappear.

For up to three pods of the bad revision: their status, and the tail of the current and
previous log of each container; plus the Kubernetes events of the workload, its bad
ReplicaSet or ControllerRevision, and those pods. Size-bounded; missing logs (a container
that never started, no previous instance) are recorded as missing, not as errors.
"""

from workers.integrations.kubernetes import Kube
from workers.models import Workload
from workers.revert import template_hash

MAX_PODS = 3
TAIL_LINES = 200
LOG_BYTES = 64 * 1024
MAX_EVENTS = 50
POD_LABEL = {
    "Deployment": "pod-template-hash",
    "Rollout": "rollouts-pod-template-hash",
    "StatefulSet": "controller-revision-hash",
    "DaemonSet": "controller-revision-hash",
}


def capture(kube: Kube, workload: Workload, owner: dict, bad_child: dict) -> dict:
    """Logs, statuses and events of the bad revision's pods."""
    labels = dict(owner["spec"].get("selector", {}).get("matchLabels", {}))
    labels[POD_LABEL[workload.kind]] = template_hash(workload.kind, bad_child)
    pods = sorted(
        kube.pods(workload.namespace, labels),
        key=lambda p: p["metadata"].get("creationTimestamp", ""),
    )[:MAX_PODS]
    captured = [_pod(kube, workload.namespace, pod) for pod in pods]
    names = [workload.name, bad_child["metadata"]["name"], *(p["name"] for p in captured)]
    events = kube.events(workload.namespace, names, limit=MAX_EVENTS)
    return {
        "pods": captured,
        "events": [_event(e) for e in events],
        "selector": labels,
        "limits": {"pods": MAX_PODS, "tail_lines": TAIL_LINES, "log_bytes": LOG_BYTES},
    }


def _pod(kube: Kube, namespace: str, pod: dict) -> dict:
    name = pod["metadata"]["name"]
    status = pod.get("status", {})
    logs = {}
    for container in pod["spec"].get("containers", []):
        logs[container["name"]] = {
            when: kube.log(
                namespace,
                name,
                container["name"],
                previous=when == "previous",
                tail_lines=TAIL_LINES,
                limit_bytes=LOG_BYTES,
            )
            for when in ("current", "previous")
        }
    return {
        "name": name,
        "phase": status.get("phase"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason")}
            for c in status.get("conditions", [])
        ],
        "containers": [
            {k: c.get(k) for k in ("name", "image", "ready", "restartCount")}
            for c in status.get("containerStatuses", [])
        ],
        "logs": logs,
    }


def _event(event: dict) -> dict:
    involved = event.get("involvedObject", {})
    return {
        "time": event.get("lastTimestamp") or event.get("eventTime"),
        "type": event.get("type"),
        "reason": event.get("reason"),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
        "message": (event.get("message") or "")[:1000],
        "count": event.get("count"),
    }
