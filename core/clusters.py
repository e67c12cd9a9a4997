"""The clusters Backstop guards, and one Kubernetes API client per cluster and process.

Without `clusters:` in the policy there is one cluster, named `policy.cluster`, reached
through KUBECONFIG (and BACKSTOP_KUBE_CONTEXT) or the pod's in-cluster credentials, as
before multi-cluster support. With `clusters:`, exactly the clusters listed there are
guarded, each reached its own way; a workload in any other cluster is never touched.

Errors: a cluster that is not guarded → UnknownCluster; a cluster whose kubeconfig or
credentials cannot be loaded → PermanentError (both fail a rollback; the watcher retries).
Clients are made on first use, never in the constructor, and reused afterwards.
"""

import threading
from collections.abc import Callable

from config.policy import ClusterAccess, Policy
from config.settings import Settings
from core.errors import PermanentError
from core.integrations.kubeconfig import api_client, configuration
from core.integrations.kubernetes import ApiClient, Kube

UNKNOWN_CLUSTER = "unknown_cluster"


class UnknownCluster(PermanentError):
    """The workload's cluster is not one Backstop is configured for."""


Connect = Callable[[str | None, str | None], ApiClient]


class Clusters:
    """Names of the guarded clusters, and a cached API client for each."""

    def __init__(self, policy: Policy, settings: Settings, *, connect: Connect = api_client):
        self.policy = policy
        self.settings = settings
        self._connect = connect
        self._clients: dict[str, ApiClient] = {}
        # Watch threads of several clusters may ask at once; one client per cluster.
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        """Every guarded cluster's name, in policy order."""
        return self.policy.guarded_clusters()

    def known(self, name: str) -> bool:
        """True when Backstop may act on cluster `name`."""
        return name in self.names

    def api(self, name: str) -> ApiClient:
        """The (cached) API client of cluster `name`; UnknownCluster or PermanentError."""
        if not self.known(name):
            raise UnknownCluster(
                f"{UNKNOWN_CLUSTER}: cluster {name!r} is not configured "
                f"(Backstop guards: {', '.join(self.names)})"
            )
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._open(name)
            return self._clients[name]

    def kube(self, name: str) -> Kube:
        """Backstop's Kubernetes calls on cluster `name`."""
        return Kube(self.api(name))

    def close(self) -> None:
        """Close every client made so far."""
        with self._lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()

    def prepare(self, *, max_age: float | None = None) -> list[object]:
        """Parse every guarded cluster's kubeconfig now, again when it is older than
        `max_age` seconds (None: CONFIGURATION_MAX_AGE), opening no connection: an RQ worker
        does this before it forks, so that its work horses find them parsed (see
        core.integrations.kubeconfig.configuration). Returns the configurations, None
        for a cluster that cannot be configured: its first use reports why."""
        found: list[object] = []  # opaque to callers, who compare them by identity
        for name in self.names:
            try:
                found.append(configuration(*self._access(name), max_age=max_age))
            except PermanentError:
                found.append(None)
        return found

    def _open(self, name: str) -> ApiClient:
        kubeconfig, context = self._access(name)
        try:
            return self._connect(kubeconfig, context)
        except PermanentError as exc:
            if not self.policy.clusters:
                raise
            raise PermanentError(f"cluster {name!r}: {exc}") from exc

    def _access(self, name: str) -> tuple[str | None, str | None]:
        """The kubeconfig and context of cluster `name`; (None, None) for the pod's own."""
        if not self.policy.clusters:
            return self.settings.kubeconfig, self.settings.kube_context
        access: ClusterAccess = self.policy.clusters[name]
        if access.in_cluster:
            return None, None
        kubeconfig = access.kubeconfig or self.settings.kubeconfig
        if not kubeconfig:
            raise PermanentError(
                f"cluster {name!r}: context {access.context!r} needs a kubeconfig: set "
                f"clusters.{name}.kubeconfig or KUBECONFIG"
            )
        return kubeconfig, access.context
