"""What every GitOps stand-in shares: a generic Kubernetes client and the reconcile loop.

`Cluster` reads, lists, merge-patches and server-side applies any kind by apiVersion and
kind (resolved through the apiserver's discovery), on plain dicts, as the real controllers
do with unstructured objects. `Controller` runs `reconcile` over its objects every
`period` seconds on a thread until `stop()`, keeps going after a failed object (recording
the error), and counts finished passes so a test can wait for "n more passes" instead of
sleeping.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from kubernetes import client, config

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
log = logging.getLogger("backstop.testbed.gitops")


class Cluster:
    """A Kubernetes API client for unstructured objects (dicts)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._kinds: dict[str, dict[str, tuple[str, bool]]] = {}

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> Cluster:
        return cls(config.new_client_from_config(str(kubeconfig)))

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> dict | None:
        """One API call; the decoded answer, None for a 404 on GET, else ApiException."""
        serialized = self.api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized)
        response.read()
        if method == "GET" and response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise client.ApiException(http_resp=response)
        return json.loads(response.data) if response.data else None

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from the apiserver's discovery (cached)."""
        if api_version not in self._kinds:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.request("GET", base) or {"resources": []}
            self._kinds[api_version] = {
                entry["kind"]: (entry["name"], entry["namespaced"])
                for entry in listing["resources"]
                if "/" not in entry["name"]  # subresources such as deployments/scale
            }
        try:
            return self._kinds[api_version][kind]
        except KeyError:
            self._kinds.pop(api_version)  # a CRD may be installed later: ask again next time
            raise LookupError(f"the apiserver serves no {kind} in {api_version}") from None

    def path(self, api_version: str, kind: str, namespace: str | None, name: str = "") -> str:
        plural, namespaced = self.resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        scope = f"/namespaces/{namespace}" if namespaced and namespace else ""
        return f"{base}{scope}/{plural}" + (f"/{name}" if name else "")

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        return self.request("GET", self.path(api_version, kind, namespace, name))

    def list(self, api_version: str, kind: str, namespace: str | None = None, **query) -> list:
        """Objects of a kind in namespace (all namespaces when None); query e.g. labelSelector."""
        answer = self.request("GET", self.path(api_version, kind, namespace), query=query.items())
        return answer["items"] if answer else []

    def live(self, obj: dict) -> dict | None:
        """The in-cluster copy of a desired object (None when absent)."""
        meta = obj["metadata"]
        return self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def apply(self, obj: dict, manager: str, force: bool = True) -> dict:
        """Server-side apply of obj as field manager `manager` (forcing conflicts, as the
        GitOps controllers do, so the desired fields win over other writers)."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
        return self.request("PATCH", path, obj, query, APPLY)

    def create(self, obj: dict) -> dict:
        """Create obj (empty strings left out, see `compact`)."""
        path = self.path(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"))
        return self.request("POST", path, compact(obj))

    def delete(self, obj: dict) -> None:
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        self.request("DELETE", path)

    def merge_patch(self, obj: dict, patch: dict, subresource: str = "") -> dict:
        """JSON merge patch of obj (or of its `status` subresource); empty strings are
        left out (see `compact`), so they leave a field as it is."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        path += f"/{subresource}" if subresource else ""
        return self.request("PATCH", path, compact(patch), (), MERGE)

    def json_patch(self, obj: dict, operations: list[dict]) -> dict:
        """JSON patch (RFC 6902) of obj: `add` replaces a value whole, where a merge
        patch would merge into it."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self.request("PATCH", path, compact(operations), (), JSON_PATCH)


class Controller:
    """A reconcile loop on a thread: `reconcile(obj)` for each of `objects()` every period."""

    name = "controller"

    def __init__(self, kubeconfig: Path, *, namespace: str | None = None, period: float = 0.5):
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace  # None watches every namespace, as the real ones do
        self.period = period
        self.errors: list[str] = []
        self.passes = 0
        self.cluster: Cluster | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self.cluster = Cluster.from_kubeconfig(self.kubeconfig)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_passes(self, count: int = 2, timeout: float = 30.0) -> None:
        """Return once `count` more full passes have finished (TimeoutError otherwise)."""
        target = self.passes + count
        deadline = time.monotonic() + timeout
        while self.passes < target:
            if time.monotonic() > deadline or not (self._thread and self._thread.is_alive()):
                raise TimeoutError(f"{self.name}: {count} passes not done within {timeout}s")
            time.sleep(0.05)

    def objects(self) -> list[dict]:
        raise NotImplementedError

    def reconcile(self, obj: dict) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for obj in self.objects():
                    self._reconcile_one(obj)
            except Exception as error:  # listing failed: try again next period
                self._record(None, error)
            self.passes += 1
            self._stop.wait(self.period)

    def _reconcile_one(self, obj: dict) -> None:
        # One broken object must not stop the others, as with the real controllers.
        try:
            self.reconcile(obj)
        except Exception as error:
            self._record(obj, error)

    def _record(self, obj: dict | None, error: Exception) -> None:
        where = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}" if obj else "list"
        message = f"{where}: {type(error).__name__}: {getattr(error, 'body', None) or error}"
        log.warning("%s: %s", self.name, message)
        self.errors.append(message)


def body(api_version: str, kind: str, name: str, spec: dict) -> dict:
    """A new object of kind named name with spec (namespace set where it is created)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


def compact(value: Any) -> Any:
    """value without empty-string fields. The test apiserver (1.20 as Debian builds it)
    validates "" in a custom object's string field as null and refuses it; upstream's Go
    types mostly omit empty strings anyway (`omitempty`), so writers here leave them out."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v != ""}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def matches(desired: Any, live: Any) -> bool:
    """Whether every field set in `desired` has the same value in `live` (fields only the
    live object has, such as defaults and status, are ignored); lists compare by position."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(matches(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(map(matches, desired, live))
        )
    return desired == live


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(duration: str) -> float:
    """A Go duration such as "3s", "1m30s" or "500ms", in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration.strip():
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
