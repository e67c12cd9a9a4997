"""The Kubernetes client's configuration: from a kubeconfig or the pod's service account.

A configuration is loaded once per process and reused while its source is unchanged (see
`configuration`); its retries never repeat a request that timed out (BoundedRetry). The
client's API modules and argument validators are made ready before a worker forks, so no
work horse pays for them (`load_api_classes`, `warm_validators`).
"""

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import urllib3
from kubernetes import client, config

from core.errors import PermanentError

# The API server asks for Retry-After: 1 when it sheds load; anything longer is left to the job.
RETRY_AFTER_MAX = 5
# The most requests Backstop sends at once through one client (evidence capture); the
# client's connection pool keeps at least that many connections, so none is discarded.
CONCURRENT_REQUESTS = 4
# A parsed kubeconfig is reused while its file is unchanged, for at most this long: then it
# is loaded again, as are credentials from exec plugins and the pod's service account token.
CONFIGURATION_MAX_AGE = 60.0


class BoundedRetry(urllib3.Retry):
    """urllib3's retries of a request that never reached the API server (connection refused,
    a pooled connection found closed), but never of one that timed out: urllib3 repeats a
    timed-out GET three times, so a hung API server held a worker for four timeouts per
    call. A timeout is raised at once and the job's own retries, with backoff, take over."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: "urllib3.BaseHTTPResponse | None" = None,
        error: Exception | None = None,
        _pool: "urllib3.connectionpool.ConnectionPool | None" = None,
        _stacktrace: TracebackType | None = None,
    ) -> "BoundedRetry":
        """The next retry state, or the error itself when it is a timeout."""
        if error is not None and _timed_out(error):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _timed_out(error: Exception | None) -> bool:
    # NewConnectionError (refused, no route) derives from ConnectTimeoutError for history's
    # sake only; it fails at once and is worth the retry.
    return isinstance(error, urllib3.exceptions.TimeoutError) and not isinstance(
        error, urllib3.exceptions.NewConnectionError
    )


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
