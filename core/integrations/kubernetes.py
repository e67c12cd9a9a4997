"""Kubernetes access as plain JSON dicts, through the official `kubernetes` client.

Objects are read with `_preload_content=False` and parsed as JSON, so the rest of Backstop
works with the API's own camelCase documents, whatever the client's model classes do.

Errors are mapped by core/integrations/kubeerrors.py (re-exported here): 409, 429, 5xx,
timeouts → TransientError (retry); 410 Gone on a watch or a LIST's continue token → Gone
(list again); 404 → NotFound; any other status → PermanentError. No network call happens
in a constructor. The watcher lists in pages (`list_page`), each object cut down as its
page is parsed, so its memory does not grow with the cluster.

Time: a call that times out is never repeated inside the client (see BoundedRetry in
core/integrations/kubeconfig.py), so a hung API server costs a worker one `timeout` per
call; the job's retries take it from there.
"""

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3 import BaseHTTPResponse as HTTPResponse

from core.integrations.kubeerrors import Conflict as Conflict
from core.integrations.kubeerrors import Gone as Gone
from core.integrations.kubeerrors import NotFound as NotFound
from core.integrations.kubeerrors import classify

ApiClient = client.ApiClient  # for modules that hold a client but must not import the library

ARGO = ("argoproj.io", "v1alpha1", "rollouts")
REQUEST_TIMEOUT = 30
FIELD_MANAGER = "backstop"  # on every write: managedFields say which fields Backstop set
# The apps/v1 kinds listed and watched, by the noun of the client's list methods.
APPS_KINDS = {
    "Deployment": "deployment",
    "StatefulSet": "stateful_set",
    "DaemonSet": "daemon_set",
    "ReplicaSet": "replica_set",
    "ControllerRevision": "controller_revision",
}


PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


def _document(response) -> dict:
    """The JSON body of a response read with `_preload_content=False`; the connection is
    given back to the pool whatever happens."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


@dataclass(frozen=True)
class Page:
    """One page of a LIST: its objects, the list's resourceVersion, the next page's token."""

    items: list[dict]
    resource_version: str
    token: str | None


@dataclass(frozen=True)
class Kind:
    """How to list and watch one kind of object."""

    name: str
    namespaced: Callable
    everywhere: Callable


class Kube:
    """The Kubernetes calls Backstop makes, returning JSON dicts."""

    def __init__(self, api: client.ApiClient, *, timeout: float = REQUEST_TIMEOUT):
        self.api = api
        self.timeout = timeout
        apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = apps
        self.kinds = {
            kind: Kind(
                kind,
                getattr(apps, f"list_namespaced_{noun}"),
                getattr(apps, f"list_{noun}_for_all_namespaces"),
            )
            for kind, noun in APPS_KINDS.items()
        }
        self.kinds["Rollout"] = Kind("Rollout", self._list_rollouts, self._list_all_rollouts)

    def _list_rollouts(self, namespace: str, **kwargs):
        return self.custom.list_namespaced_custom_object(*ARGO[:2], namespace, ARGO[2], **kwargs)

    def _list_all_rollouts(self, **kwargs):
        return self.custom.list_cluster_custom_object(*ARGO, **kwargs)

    def _raw(self, kind: str, namespace: str | None, **kwargs):
        spec = self.kinds[kind]
        try:
            if namespace is None:
                return spec.everywhere(_preload_content=False, **kwargs)
            return spec.namespaced(namespace, _preload_content=False, **kwargs)
        except Exception as exc:
            raise classify(exc) from exc

    def list_all(
        self, kind: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> tuple[list[dict], str]:
        """Every object of `kind` (in `namespace`, or everywhere) and the list's resourceVersion."""
        page = self.list_page(kind, namespace, label_selector=label_selector)
        return page.items, page.resource_version

    def list_page(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        limit: int | None = None,
        token: str | None = None,
        label_selector: str | None = None,
        brief: Callable[[dict], dict] | None = None,
    ) -> Page:
        """One page of at most `limit` objects, from the start or from a continue `token`
        (an expired token raises Gone); each object cut down by `brief` as soon as its page
        is parsed, so the page's full JSON is dropped before the next one is read."""
        given = {"label_selector": label_selector, "limit": limit, "_continue": token}
        extra = {name: value for name, value in given.items() if value}
        document = _document(self._raw(kind, namespace, _request_timeout=self.timeout, **extra))
        items = document.get("items") or []
        metadata = document.get("metadata") or {}
        return Page(
            [brief(item) for item in items] if brief else items,
            metadata.get("resourceVersion", ""),
            metadata.get("continue") or None,
        )

    def watch(
        self, kind: str, namespace: str | None, resource_version: str, *, seconds: int = 60
    ) -> Iterator[tuple[str, dict]]:
        """Changes to `kind` after `resource_version`, for at most `seconds`; raises Gone."""
        response = self._raw(
            kind,
            namespace,
            watch=True,
            resource_version=resource_version,
            timeout_seconds=seconds,
            allow_watch_bookmarks=True,
            _request_timeout=seconds + self.timeout,
        )
        try:
            for line in iter_resp_lines(response):
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise classify(
                        ApiException(status=status.get("code"), reason=status.get("message", ""))
                    )
                yield event["type"], event["object"]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise classify(exc) from exc
        finally:
            response.release_conn()

    def owned(
        self, kind: str, owner: dict, *, brief: Callable[[dict], dict] | None = None
    ) -> list[dict]:
        """Objects of `kind` in the owner's namespace whose controller is `owner` (each cut
        down by `brief` when given)."""
        selector = owner["spec"].get("selector", {}).get("matchLabels", {})
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None
        namespace = owner["metadata"]["namespace"]
        items = self.list_page(kind, namespace, label_selector=text, brief=brief).items
        uid = owner["metadata"]["uid"]
        return [
            item
            for item in items
            if any(
                ref.get("uid") == uid and ref.get("controller")
                for ref in item["metadata"].get("ownerReferences", [])
            )
        ]

    # -- single objects ----------------------------------------------------------------------

    def _read_method(self, kind: str):
        return {
            "Deployment": self.apps.read_namespaced_deployment,
            "StatefulSet": self.apps.read_namespaced_stateful_set,
            "DaemonSet": self.apps.read_namespaced_daemon_set,
            "Rollout": lambda name, ns, **kw: self.custom.get_namespaced_custom_object(
                *ARGO[:2], ns, ARGO[2], name, **kw
            ),
            "CronJob": self._read_cron_job,
            "Job": client.BatchV1Api(self.api).read_namespaced_job,
            # For what changed: a ConfigMap's resourceVersion and write times (core/changes.py).
            "ConfigMap": self.core.read_namespaced_config_map,
        }[kind]

    def _read_cron_job(self, name: str, namespace: str, **kwargs):
        """batch/v1 CronJob (Kubernetes >= 1.21), or batch/v1beta1 on older clusters."""
        try:
            return self.custom.get_namespaced_custom_object(
                "batch", "v1", namespace, "cronjobs", name, **kwargs
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self.custom.get_namespaced_custom_object(
                "batch", "v1beta1", namespace, "cronjobs", name, **kwargs
            )

    def _patch_method(self, kind: str, *, status: bool = False):
        if kind == "Rollout":
            patch = (
                self.custom.patch_namespaced_custom_object_status
                if status
                else self.custom.patch_namespaced_custom_object
            )
            return lambda name, ns, body, **kw: patch(*ARGO[:2], ns, ARGO[2], name, body, **kw)
        return {
            "Deployment": self.apps.patch_namespaced_deployment,
            "StatefulSet": self.apps.patch_namespaced_stateful_set,
            "DaemonSet": self.apps.patch_namespaced_daemon_set,
        }[kind]

    def _json(self, call) -> dict:
        try:
            response = call()
        except Exception as exc:
            raise classify(exc) from exc
        return _document(response)

    def get(self, kind: str, namespace: str, name: str) -> dict:
        """One object; NotFound when it does not exist."""
        read = self._read_method(kind)
        return self._json(
            lambda: read(name, namespace, _preload_content=False, _request_timeout=self.timeout)
        )

    def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict | list,
        *,
        patch_type: str,
        status: bool = False,
    ) -> dict:
        """Patch an object (or its status subresource); returns the object as patched."""
        method = self._patch_method(kind, status=status)
        return self._json(
            lambda: method(
                name,
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                _preload_content=False,
                _content_type=PATCH_TYPES[patch_type],
                _request_timeout=self.timeout,
            )
        )

    def create_job(self, namespace: str, body: dict) -> dict:
        """Create a batch/v1 Job."""
        batch = client.BatchV1Api(self.api)
        return self._json(
            lambda: batch.create_namespaced_job(
                # The client sends a dict body as it is; its stubs only name the model class.
                namespace,
                cast(Any, body),
                field_manager=FIELD_MANAGER,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        )

    # -- pods, logs, events ----------------------------------------------------------------

    def pods(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        """Pods matching every label."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        response = self._json(
            lambda: self.core.list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        )
        return response.get("items", [])

    def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        previous: bool,
        tail_lines: int,
        limit_bytes: int,
    ) -> str | None:
        """The tail of a container's log; None when there is none (not started, no restart)."""
        try:
            # With _preload_content=False the client answers the raw urllib3 response, whatever
            # its stubs say (a str).
            response = cast(
                HTTPResponse,
                self.core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container=container,
                    previous=previous,
                    tail_lines=tail_lines,
                    limit_bytes=limit_bytes,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                ),
            )
        except ApiException as exc:
            if exc.status in (400, 404):  # no such (previous) container, or no kubelet
                return None
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        try:
            return response.data.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    def events_page(self, namespace: str, size: int) -> list[dict] | None:
        """Every event in `namespace` when there are at most `size`, in the API server's order
        (by name); None when there are more (the rest of the page is dropped)."""
        response = self._json(
            lambda: self.core.list_namespaced_event(
                namespace, limit=size, _preload_content=False, _request_timeout=self.timeout
            )
        )
        if response.get("metadata", {}).get("continue"):
            return None
        return response.get("items", [])

    def events_about(self, namespace: str, name: str) -> list[dict]:
        """The events in `namespace` whose involved object is called `name` (of any kind).

        The API server selects them (field selector `involvedObject.name`), so a busy
        namespace's other events are neither sent nor parsed."""
        response = self._json(
            lambda: self.core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.name={name}",
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        )
        return response.get("items", [])

    def warm(self, connections: int = 2) -> None:
        """Open `connections` connections to the API server, for the calls that follow (a
        spare work horse's warm-up; evidence capture uses two at once): one small discovery
        request on each, which every identity may make."""
        with ThreadPoolExecutor(connections) as pool:
            for done in [pool.submit(self._discover) for _ in range(connections)]:
                done.result()

    def _discover(self) -> None:
        self._json(
            lambda: self.apps.get_api_resources(
                _preload_content=False, _request_timeout=self.timeout
            )
        )

    def has_argo_rollouts(self) -> bool:
        """True when the Argo Rollouts CRD is served by this cluster."""
        try:
            found = self.custom.list_cluster_custom_object(
                *ARGO, limit=1, _preload_content=False, _request_timeout=self.timeout
            )
            cast(HTTPResponse, found).release_conn()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        return True
