"""Evidence from the bad revision, captured before the revert makes its pods disappear.

For up to three pods of the bad revision: their status, and the tail of the current and
previous log of each container; plus the Kubernetes events of the workload, its bad
ReplicaSet or ControllerRevision, and those pods. Size-bounded; missing logs (a container
that never started, no previous instance) are recorded as missing, not as errors.

The revert waits for the capture, so it makes few requests, and overlaps them only when
that pays. The namespace's events are asked for first, in a thread of their own, as soon
as the rollback holds its lock (`events_read_ahead`): the API server takes longest over
that list (10 ms and more for a few hundred events), and nothing about it depends on
pre-flight, which runs meanwhile, nor on the pods, read after it; a spare work horse comes
with two connections open (workers.context.warm_horse). The pods' requests go one after
another over one connection while each answers within SLOW_REQUEST: a request side by side
needs a connection of its own, whose TLS handshake costs a fresh work horse about 2-3 ms,
more than a quick request. Once one is slower (a log is read through the pod's kubelet,
tens of ms on a real cluster), the rest of its kind run at most CONCURRENT_REQUESTS at
once over the same client (its connection pool is thread-safe and keeps that many
connections). The events come from one request for the whole namespace when it holds at
most EVENT_PAGE, filtered here; in a busier namespace, from one field-selected request per
object, so that its other events are neither sent nor parsed, and only after the revert
(`late_events`): each such request makes the API server read the whole namespace's events
(events have no watch cache), ~100 ms with a few hundred, and events, unlike the pods'
logs, outlive the revert. Either way the same events, and the error raised, if any, is the
first in the order pods, logs, events."""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

from core.integrations.kubeconfig import CONCURRENT_REQUESTS
from core.integrations.kubernetes import Kube
from core.models import Workload
from workers.revert import template_hash

MAX_PODS = 3
TAIL_LINES = 200
LOG_BYTES = 64 * 1024
MAX_EVENTS = 50
EVENT_PAGE = 500
SLOW_REQUEST = 0.02  # seconds
WHEN = ("current", "previous")
_UNREAD = object()
POD_LABEL = {
    "Deployment": "pod-template-hash",
    "Rollout": "rollouts-pod-template-hash",
    "StatefulSet": "controller-revision-hash",
    "DaemonSet": "controller-revision-hash",
}


@contextmanager
def events_read_ahead(
    kube: Kube, namespace: str, *, wanted: bool = True
) -> Iterator[Future | None]:
    """Read the namespace's events page in a thread while the block runs (pre-flight), for
    `capture(page=...)`; None when not `wanted` (the evidence was captured before). Its
    error, if any, is raised by `capture`; leaving the block waits for the request."""
    if not wanted:
        yield None
        return
    with ThreadPoolExecutor(1, thread_name_prefix="backstop-events") as side:
        yield side.submit(kube.events_page, namespace, EVENT_PAGE)


def capture(
    kube: Kube, workload: Workload, owner: dict, bad_child: dict, page: Future | None = None
) -> dict:
    """Logs, statuses and events of the bad revision's pods; `page` is the namespace's
    events page from `events_read_ahead`, else asked for here, alongside the pods."""
    labels = dict(owner["spec"].get("selector", {}).get("matchLabels", {}))
    labels[POD_LABEL[workload.kind]] = template_hash(workload.kind, bad_child)
    namespace = workload.namespace
    with ThreadPoolExecutor(1) as side:
        if page is None:
            page = side.submit(kube.events_page, namespace, EVENT_PAGE)
        pods = sorted(
            kube.pods(namespace, labels), key=lambda p: p["metadata"].get("creationTimestamp", "")
        )[:MAX_PODS]
        reads = [
            (pod["metadata"]["name"], container["name"], when)
            for pod in pods
            for container in pod["spec"].get("containers", [])
            for when in WHEN
        ]
        logs = dict(
            zip(reads, gather([partial(_log, kube, namespace, *r) for r in reads]), strict=True)
        )
        names = [
            workload.name,
            bad_child["metadata"]["name"],
            *(p["metadata"]["name"] for p in pods),
        ]
        events = page.result()
    captured = {
        "pods": [_pod(pod, logs) for pod in pods],
        "events": [],
        "selector": labels,
        "limits": {"pods": MAX_PODS, "tail_lines": TAIL_LINES, "log_bytes": LOG_BYTES},
    }
    if events is None:
        # A busy namespace: one request per object, each of which makes the API server read
        # every event of the namespace (~100 ms past a few hundred). Events outlive the
        # revert by an hour, logs do not: they are read after the PATCH (`late_events`).
        captured["events_pending"] = names
    else:
        captured["events"] = [_event(e) for e in _events(kube, namespace, names, events)]
    return captured


def late_events(kube: Kube, namespace: str, evidence: dict) -> bool:
    """Read the events `capture` left for after the revert into `evidence`; True when it
    read any (the caller saves it)."""
    names = evidence.pop("events_pending", None)
    if not names:
        return False
    evidence["events"] = [_event(e) for e in _events(kube, namespace, names, None)]
    return True


def gather(calls: list[Callable]) -> list:
    """The results of `calls`, in order: one after another while each returns within
    SLOW_REQUEST, then the rest at most CONCURRENT_REQUESTS at once. An error is raised
    when its call's turn comes; calls not yet started are then cancelled."""
    results = []
    for index, call in enumerate(calls):
        started = time.monotonic()
        results.append(call())
        rest = calls[index + 1 :]
        if rest and time.monotonic() - started > SLOW_REQUEST:
            with ThreadPoolExecutor(min(len(rest), CONCURRENT_REQUESTS)) as pool:
                futures = [pool.submit(c) for c in rest]
                try:
                    results.extend(future.result() for future in futures)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
            break
    return results


def _log(kube: Kube, namespace: str, pod: str, container: str, when: str) -> str | None:
    return kube.log(
        namespace,
        pod,
        container,
        previous=when == "previous",
        tail_lines=TAIL_LINES,
        limit_bytes=LOG_BYTES,
    )


def _events(kube: Kube, namespace: str, names: list[str], page=_UNREAD) -> list[dict]:
    """The MAX_EVENTS newest events about the named objects (see the module docstring);
    `page` is the namespace's `events_page` when it was read already."""
    if page is _UNREAD:
        page = kube.events_page(namespace, EVENT_PAGE)
    if page is not None:
        wanted = set(names)
        found = [[e for e in page if e.get("involvedObject", {}).get("name") in wanted]]
    else:
        found = gather([partial(kube.events_about, namespace, n) for n in dict.fromkeys(names)])
    return latest_events(found, MAX_EVENTS)


def _pod(pod: dict, logs: dict[tuple[str, str, str], str | None]) -> dict:
    name = pod["metadata"]["name"]
    status = pod.get("status", {})
    return {
        "name": name,
        "phase": status.get("phase"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason")}
            for c in status.get("conditions", [])
        ],
        "containers": [
            {k: c.get(k) for k in ("name", "image", "imageID", "ready", "restartCount")}
            for c in status.get("containerStatuses", [])
        ],
        "logs": {
            container["name"]: {when: logs[(name, container["name"], when)] for when in WHEN}
            for container in pod["spec"].get("containers", [])
        },
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


def latest_events(found: list[list[dict]], limit: int) -> list[dict]:
    """The `limit` newest of several lists of events, oldest first. Events at the same time
    keep the API's own order (by name), as in one list of the whole namespace."""
    events = [event for group in found for event in group]
    events.sort(
        key=lambda e: (
            e.get("lastTimestamp") or e.get("eventTime") or "",
            e.get("metadata", {}).get("name", ""),
        )
    )
    return events[-limit:]
