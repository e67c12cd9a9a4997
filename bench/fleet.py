"""The cluster P6 measures the watcher on (bench/watcher.py): Deployments, StatefulSets and
DaemonSets across 100 namespaces, created in parallel as `kubectl apply` leaves them."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client

from testbed.processes import poll

NAMESPACES = 100
REVISION = "deployment.kubernetes.io/revision"


def namespace(index: int) -> str:
    return f"fleet-{index % NAMESPACES:03d}"


def workload(name: str, image: str, **spec) -> dict:
    """A workload as `kubectl apply` leaves it: labels, a realistic container, and the
    last-applied annotation (a copy of the manifest, as on most clusters)."""
    labels = {"app": name, "team": "shop", "tier": "backend"}
    container = {
        "name": "app",
        "image": image,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "env": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(5)],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
    }
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            **spec,
        },
    }
    applied = json.dumps(body, separators=(",", ":"))
    body["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": applied}
    return body


class Fleet:
    """The cluster's objects, created in parallel (the API server takes hundreds a second)."""

    def __init__(self, api: client.ApiClient):
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.deployments: list[tuple[str, str]] = []
        self.statefulsets = self.daemonsets = 0

    def create_namespaces(self, pool: ThreadPoolExecutor) -> None:
        names = [namespace(i) for i in range(NAMESPACES)]
        body = lambda n: {"metadata": {"name": n}}  # noqa: E731
        list(pool.map(lambda n: self.core.create_namespace(body(n), _preload_content=False), names))

    def add_deployments(self, pool: ThreadPoolExecutor, count: int) -> None:
        start = len(self.deployments)
        made = [(namespace(i), f"dep-{i:05d}") for i in range(start, start + count)]

        def create(item: tuple[str, str]) -> None:
            ns, name = item
            body = workload(name, f"shop/{name}:1", replicas=0)
            self.apps.create_namespaced_deployment(ns, body, _preload_content=False)

        list(pool.map(create, made))
        self.deployments += made

    def add_sets(self, pool: ThreadPoolExecutor, statefulsets: int, daemonsets: int) -> None:
        def stateful(i: int) -> None:
            body = workload(f"sts-{i:03d}", "shop/ledger:1", replicas=0, serviceName="ledger")
            self.apps.create_namespaced_stateful_set(namespace(i), body, _preload_content=False)

        def daemon(i: int) -> None:
            body = workload(f"ds-{i:03d}", "ops/agent:1")
            self.apps.create_namespaced_daemon_set(namespace(i), body, _preload_content=False)

        list(pool.map(stateful, range(statefulsets)))
        list(pool.map(daemon, range(daemonsets)))
        self.statefulsets, self.daemonsets = statefulsets, daemonsets

    def reconciled(self) -> tuple[int, int]:
        """(Deployments with a revision, Deployments): the controller's progress."""
        done = total = 0
        token = None
        while True:
            response = self.apps.list_deployment_for_all_namespaces(
                limit=500, _continue=token, _preload_content=False
            )
            page = json.loads(response.data)
            for item in page["items"]:
                total += 1
                done += REVISION in (item["metadata"].get("annotations") or {})
            token = page["metadata"].get("continue")
            if not token:
                return done, total

    def _all_reconciled(self) -> bool:
        done, total = self.reconciled()
        return done == total

    def resource_version(self) -> str:
        """The cluster's current resourceVersion (a watch from it sees what follows)."""
        response = self.apps.list_deployment_for_all_namespaces(limit=1, _preload_content=False)
        return json.loads(response.data)["metadata"]["resourceVersion"]

    def wait_reconciled(self, timeout: float) -> float:
        """Wait until the controller gave every Deployment its revision; seconds waited."""
        started = time.monotonic()
        poll(self._all_reconciled, timeout=timeout, interval=2)
        return round(time.monotonic() - started, 1)
