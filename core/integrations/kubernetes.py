"""Kubernetes access as plain JSON dicts, through the official `kubernetes` client.

Objects are read with `_preload_content=False` and parsed as JSON, so the rest of Backstop
works with the API's own camelCase documents, whatever the client's model classes do.

Errors: `ApiException` with status 409, 429 or 5xx, urllib3 timeouts and connection
errors → TransientError (retry); 410 Gone on a watch → Gone (relist); any other status
(400, 401, 403, 404, 422, ...) → PermanentError. No network call happens in a constructor.

Time: a call that times out is never repeated inside the client (see BoundedRetry), so a
hung API server costs a worker one `timeout` per call; the job's retries take it from there.
"""

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from core.errors import PermanentError, TransientError

ApiClient = client.ApiClient  # for modules that hold a client but must not import the library

ARGO = ("argoproj.io", "v1alpha1", "rollouts")
REQUEST_TIMEOUT = 30
# The API server asks for Retry-After: 1 when it sheds load; anything longer is left to the job.
RETRY_AFTER_MAX = 5
# The most requests Backstop sends at once through one client (evidence capture); the
# client's connection pool keeps at least that many connections, so none is discarded.
CONCURRENT_REQUESTS = 4
# A parsed kubeconfig is reused while its file is unchanged, for at most this long: then it
# is loaded again, as are credentials from exec plugins and the pod's service account token.
CONFIGURATION_MAX_AGE = 60.0


class Gone(TransientError):
    """A watch's resourceVersion is too old: list again."""


class NotFound(PermanentError):
    """The object does not exist (404)."""


class Conflict(TransientError):
    """409: the object changed under us (retry from a fresh read), or already exists."""


class BoundedRetry(urllib3.Retry):
    """urllib3's retries of a request that never reached the API server (connection refused,
    a pooled connection found closed), but never of one that timed out: urllib3 repeats a
    timed-out GET three times, so a hung API server held a worker for four timeouts per
    call. A timeout is raised at once and the job's own retries, with backoff, take over."""

    def increment(self, method=None, url=None, *args, error=None, **kwargs):
        """The next retry state, or the error itself when it is a timeout."""
        if _timed_out(error):
            raise error
        return super().increment(method, url, *args, error=error, **kwargs)


def _timed_out(error: Exception | None) -> bool:
    # NewConnectionError (refused, no route) derives from ConnectTimeoutError for history's
    # sake only; it fails at once and is worth the retry.
    return isinstance(error, urllib3.exceptions.TimeoutError) and not isinstance(
        error, urllib3.exceptions.NewConnectionError
    )


PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An API client from a kubeconfig, or in-cluster credentials when running in a pod;
    PermanentError when neither is usable (no file, no such context, no service account).
    Each client has its own connection pool; its configuration may be shared (see
    `configuration`)."""
    return client.ApiClient(configuration(kubeconfig, context))


@dataclass(frozen=True)
class _Loaded:
    """A configuration, and what it was loaded from when."""

    source: tuple | None
    at: float
    configuration: client.Configuration


_loaded: dict[tuple[str | None, str | None], _Loaded] = {}
_loaded_lock = threading.Lock()


def configuration(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    max_age: float | None = None,
) -> client.Configuration:
    """The client configuration of a kubeconfig (and context), or of the pod's credentials.

    Parsing a kubeconfig costs a work horse about 2 ms and leaves a temporary file for each
    embedded certificate behind (the client removes them at exit, which a work horse never
    reaches). So it is parsed once per process, which an RQ worker does before it forks,
    and reused while the file's content is unchanged and for at most CONFIGURATION_MAX_AGE:
    a changed kubeconfig applies to the next job (a spare work horse's worker asks for less
    than that: see core.queues). A configuration holds no connection, so a work horse
    may inherit it; PermanentError as for `api_client`.
    """
    key, source, now = (kubeconfig, context), _source(kubeconfig), time.monotonic()
    with _loaded_lock:
        found = _loaded.get(key)
    if (
        found is not None
        and source is not None
        and found.source == source
        and now - found.at < (CONFIGURATION_MAX_AGE if max_age is None else max_age)
    ):
        return found.configuration
    loaded = _load(kubeconfig, context)
    with _loaded_lock:
        _loaded[key] = _Loaded(source, now, loaded)
    return loaded


def _source(kubeconfig: str | None) -> tuple | None:
    """What a configuration is loaded from: the kubeconfig files' bytes (KUBECONFIG may list
    several), or the in-cluster marker; None when a file cannot be read (never cached)."""
    if not kubeconfig:
        return ("in-cluster", os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        return tuple(
            (path, Path(path).read_bytes()) for path in kubeconfig.split(os.pathsep) if path
        )
    except OSError:
        return None


def _load(kubeconfig: str | None, context: str | None) -> client.Configuration:
    configuration = client.Configuration()
    configuration.retries = BoundedRetry(total=3, retry_after_max=RETRY_AFTER_MAX)
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize, CONCURRENT_REQUESTS
    )
    try:
        if kubeconfig:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            return configuration
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
            return configuration
    except (config.ConfigException, OSError) as exc:
        raise PermanentError(f"Kubernetes client configuration: {exc}") from exc
    raise PermanentError("no Kubernetes configured: set KUBECONFIG or run in a cluster")


# The client methods Backstop calls ((API class, method) pairs), whose argument validators
# `warm_validators` builds ahead.
CALLED = (
    *(
        ("AppsV1Api", f"{verb}_namespaced_{kind}")
        for verb in ("list", "read", "patch")
        for kind in ("deployment", "stateful_set", "daemon_set")
    ),
    ("AppsV1Api", "list_namespaced_replica_set"),
    ("AppsV1Api", "list_namespaced_controller_revision"),
    ("CustomObjectsApi", "list_namespaced_custom_object"),
    ("CustomObjectsApi", "list_cluster_custom_object"),
    ("CustomObjectsApi", "get_namespaced_custom_object"),
    ("CustomObjectsApi", "patch_namespaced_custom_object"),
    ("CustomObjectsApi", "patch_namespaced_custom_object_status"),
    ("CoreV1Api", "list_namespaced_pod"),
    ("CoreV1Api", "read_namespaced_pod_log"),
    ("CoreV1Api", "list_namespaced_event"),
    ("BatchV1Api", "read_namespaced_job"),
    ("BatchV1Api", "create_namespaced_job"),
)


# The Kubernetes client loads each API class's module on first use (about 0.3 s apiece).
KUBE_API_CLASSES = ("AppsV1Api", "CoreV1Api", "CustomObjectsApi", "BatchV1Api")


def load_api_classes() -> None:
    """Load the modules of the API classes Backstop uses now, not on a job's first call."""
    for name in KUBE_API_CLASSES:
        getattr(client, name)


def warm_validators() -> int:
    """Build the argument validators of the client methods Backstop calls; return how many.

    The client checks every call's arguments with pydantic's `validate_call`, whose validator
    is built on a method's first call, about 1.3 ms each: a work horse paid that for every
    method of a rollback, since a fork only inherits what its parent built. A call whose
    `self` is a bare object and whose first argument has the wrong type builds the validator
    and stops there, before any request could be made.
    """
    warmed = 0
    for api, name in CALLED:
        method = getattr(getattr(client, api), name)
        if getattr(method, "raw_function", None) is None:
            continue  # not wrapped by validate_call: nothing to build
        try:
            method(object(), object())
        except Exception:  # noqa: S110 (expected: ValidationError; a bare `self` sends nothing)
            pass
        warmed += 1
    return warmed


def classify(exc: Exception) -> Exception:
    """Map a client error to TransientError or PermanentError (see module docstring)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        detail = f"Kubernetes API {status}: {exc.reason}"
        if status == 410:
            return Gone(detail)
        if status == 404:
            return NotFound(detail)
        if status == 409:
            return Conflict(detail)
        if status == 429 or status >= 500 or status == 0:
            return TransientError(detail)
        return PermanentError(detail)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return TransientError(f"Kubernetes API unreachable: {type(exc).__name__}")
    return exc


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
            "Deployment": Kind(
                "Deployment",
                apps.list_namespaced_deployment,
                apps.list_deployment_for_all_namespaces,
            ),
            "StatefulSet": Kind(
                "StatefulSet",
                apps.list_namespaced_stateful_set,
                apps.list_stateful_set_for_all_namespaces,
            ),
            "DaemonSet": Kind(
                "DaemonSet",
                apps.list_namespaced_daemon_set,
                apps.list_daemon_set_for_all_namespaces,
            ),
            "ReplicaSet": Kind(
                "ReplicaSet",
                apps.list_namespaced_replica_set,
                apps.list_replica_set_for_all_namespaces,
            ),
            "ControllerRevision": Kind(
                "ControllerRevision",
                apps.list_namespaced_controller_revision,
                apps.list_controller_revision_for_all_namespaces,
            ),
            "Rollout": Kind("Rollout", self._list_rollouts, self._list_all_rollouts),
        }

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
        extra = {"label_selector": label_selector} if label_selector else {}
        response = self._raw(kind, namespace, _request_timeout=self.timeout, **extra)
        try:
            document = json.loads(response.data)
        finally:
            response.release_conn()
        return document.get("items", []), document["metadata"].get("resourceVersion", "")

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

    def owned(self, kind: str, owner: dict) -> list[dict]:
        """Objects of `kind` in the owner's namespace whose controller is `owner`."""
        selector = owner["spec"].get("selector", {}).get("matchLabels", {})
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None
        items, _ = self.list_all(kind, owner["metadata"]["namespace"], label_selector=text)
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
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

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
                namespace, body, _preload_content=False, _request_timeout=self.timeout
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
            response = self.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                previous=previous,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                _preload_content=False,
                _request_timeout=self.timeout,
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
            self.custom.list_cluster_custom_object(
                *ARGO, limit=1, _preload_content=False, _request_timeout=self.timeout
            ).release_conn()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        return True


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
