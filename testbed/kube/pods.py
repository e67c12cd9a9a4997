"""Kubelet stand-in: marks every pod Running and Ready, except pods of images held unready.

No kubelet runs in the test control plane, so pods would stay Pending forever and no
rollout could complete. This helper registers one Node (for DaemonSets), watches pods in
all namespaces and patches their status subresource as a kubelet would. Pods stay
unscheduled (no nodeName), so the apiserver deletes them at once, as a rollout expects.
Images listed in `<workdir>/unready-images` (one per line) stay Running but not
Ready, which stalls a rollout to them; removing an image from the file makes its pods
Ready within about half a second.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client, config, watch

NODE_NAME = "backstop-test-node"
UNREADY_FILE = "unready-images"
READY_MARKER = "pod-helper.ready"
PROGRAM = "pod-helper"

# How often the unready list is re-read, so held pods flip soon after a change.
POLL_SECONDS = 0.5
# A full re-list this often repairs anything a failed patch or a lost event left behind.
RESYNC_SECONDS = 5.0
# Pause after a watch or API failure before listing again.
RETRY_SECONDS = 1.0

log = logging.getLogger("backstop.pod-helper")


def hold_unready(workdir: Path, image: str) -> None:
    """Keep pods running `image` unready (Running, Ready=False) until released."""
    _edit_unready(Path(workdir), lambda images: images | {image})


def release(workdir: Path, image: str) -> None:
    """Let pods running `image` become Ready again."""
    _edit_unready(Path(workdir), lambda images: images - {image})


def unready_images(workdir: Path) -> frozenset[str]:
    """Return the images currently held unready."""
    try:
        text = (Path(workdir) / UNREADY_FILE).read_text()
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _edit_unready(workdir: Path, change: Callable[[frozenset[str]], frozenset[str]]) -> None:
    """Apply change to the unready list under a lock, replacing the file atomically."""
    path = workdir / UNREADY_FILE
    with open(workdir / f"{UNREADY_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        images = change(unready_images(workdir))
        staging = path.with_suffix(".tmp")
        staging.write_text("".join(f"{image}\n" for image in sorted(images)))
        os.replace(staging, path)


def status_patch(pod: client.V1Pod, unready: frozenset[str], now: datetime) -> dict | None:
    """Return the status patch a kubelet would make for pod, or None if none is needed."""
    if pod.metadata.deletion_timestamp is not None:
        return None
    containers = pod.spec.containers
    ready = not any(container.image in unready for container in containers)
    status = pod.status
    current = {c.type: c for c in (status.conditions or [])} if status else {}
    if status and status.phase == "Running" and _is_true(current.get("Ready")) == ready:
        return None
    stamp = _rfc3339(now)
    wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": ready, "Ready": ready}
    patch = {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": _pod_ip(pod.metadata.uid),
        "podIPs": [{"ip": _pod_ip(pod.metadata.uid)}],
        "conditions": [
            _condition(kind, value, current.get(kind), stamp) for kind, value in wanted.items()
        ],
        "containerStatuses": [_container_status(c, ready, stamp) for c in containers],
    }
    if status is None or status.start_time is None:
        patch["startTime"] = stamp
    return {"status": patch}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_true(condition: client.V1PodCondition | None) -> bool:
    return condition is not None and condition.status == "True"


def _condition(kind: str, value: bool, current: client.V1PodCondition | None, stamp: str) -> dict:
    """Build a pod condition, keeping its transition time when its status is unchanged."""
    if current is not None and _is_true(current) == value and current.last_transition_time:
        stamp = _rfc3339(current.last_transition_time)
    condition = {"type": kind, "status": "True" if value else "False", "lastTransitionTime": stamp}
    if not value:
        condition["reason"] = "ContainersNotReady"
    return condition


def _container_status(container: client.V1Container, ready: bool, stamp: str) -> dict:
    return {
        "name": container.name,
        "image": container.image,
        "imageID": f"backstop-test://{container.image}",
        "ready": ready,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": stamp}},
    }


def _pod_ip(uid: str) -> str:
    """Derive a stable, plausible pod IP from the pod's uid."""
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{digest[1] % 254 + 1}"


class PodHelper:
    """Watches pods and patches their status; run() blocks until stop is set."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir)
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Watch in a background thread; re-evaluate all pods when the unready list changes."""
        threading.Thread(target=self._watch_forever, name="pod-watch", daemon=True).start()
        core = self._api()
        seen = unready_images(self.workdir)
        next_resync = time.monotonic() + RESYNC_SECONDS
        while not self.stop.wait(POLL_SECONDS):
            current = unready_images(self.workdir)
            if current != seen or time.monotonic() >= next_resync:
                seen, next_resync = current, time.monotonic() + RESYNC_SECONDS
                self._guarded(self._reconcile_all, core)

    def _api(self) -> client.CoreV1Api:
        return client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))

    def _watch_forever(self) -> None:
        """List, then watch from that list's version; start over after any failure."""
        core = self._api()
        while not self.stop.is_set():
            if not self._guarded(self._list_and_watch, core):
                self.stop.wait(RETRY_SECONDS)

    def _list_and_watch(self, core: client.CoreV1Api) -> None:
        _register_node(core)
        version = self._reconcile_all(core)
        (self.workdir / READY_MARKER).touch()
        stream = watch.Watch().stream(
            core.list_pod_for_all_namespaces, resource_version=version, timeout_seconds=300
        )
        for event in stream:
            if self.stop.is_set():
                return
            if event["type"] in ("ADDED", "MODIFIED"):
                self._reconcile(core, [event["object"]])

    def _reconcile_all(self, core: client.CoreV1Api) -> str:
        """Bring every pod to its wanted status; return the list's resourceVersion."""
        pods = core.list_pod_for_all_namespaces()
        self._reconcile(core, pods.items)
        return pods.metadata.resource_version

    def _reconcile(self, core: client.CoreV1Api, pods: Iterable[client.V1Pod]) -> None:
        with self._lock:
            unready = unready_images(self.workdir)
            for pod in pods:
                patch = status_patch(pod, unready, datetime.now(UTC))
                if patch is not None:
                    self._guarded(
                        core.patch_namespaced_pod_status,
                        pod.metadata.name,
                        pod.metadata.namespace,
                        patch,
                    )

    def _guarded(self, action: Callable[..., object], *args: object) -> bool:
        """Run action(*args); log and swallow any error so the helper never dies. True if it ran."""
        try:
            action(*args)
        except Exception as error:  # a test helper must outlive any API hiccup
            first_line = (str(error).strip().splitlines() or [""])[0]
            log.warning("pod helper: %s: %s", type(error).__name__, first_line)
            return False
        return True


def _register_node(core: client.CoreV1Api) -> None:
    """Create the Node a kubelet would register, so DaemonSets have somewhere to run."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
    }
    try:
        core.create_node(node)
    except client.ApiException as error:
        if error.status != 409:  # already registered by an earlier run of the helper
            raise


def command(kubeconfig: Path, workdir: Path) -> list[str]:
    """Return the argv that runs the helper as its own process."""
    return [
        sys.executable,
        "-m",
        "testbed.kube",
        PROGRAM,
        "--kubeconfig",
        str(kubeconfig),
        "--dir",
        str(workdir),
    ]


def main(kubeconfig: Path, workdir: Path) -> None:
    """Process entry point: run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    helper = PodHelper(kubeconfig, workdir)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: helper.stop.set())
    log.info("pod helper watching pods; unready list: %s", Path(workdir) / UNREADY_FILE)
    helper.run()
