"""The deployment watcher (`backstop watch`): records every rollout once.

For each guarded cluster (core/clusters.py) a thread runs its own Watcher, so an
unreachable cluster only delays its own history. Within a cluster, for each kind
(Deployment, StatefulSet, DaemonSet, and Argo Rollout when its CRD is served) and each
allowed namespace (or all), a thread lists the objects in pages (each object cut down to
what the watcher reads, workers/briefs.py), settles those whose revision is already
recorded with one Redis pipeline per page, records the others, then watches from the
list's resourceVersion, so nothing that changed in between is missed. On 410 Gone, a
dropped connection or a restart it lists again: recording is idempotent, keyed by
(workload, revision), so a relist neither duplicates nor misses a rollout.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from redis.exceptions import RedisError

from config.policy import Policy
from core import owners
from core.clusters import Clusters
from core.errors import IntegrationError, PermanentError
from core.integrations.kubernetes import Gone, Kube, Page
from core.models import Workload
from core.records import OwnerRecord, Rollout, WorkloadRecord
from core.revisions import controller_revision, is_complete, replica_set_revision
from core.store import Store
from workers.briefs import brief

log = logging.getLogger("backstop.watcher")

WATCHED = ("Deployment", "StatefulSet", "DaemonSet")
CHILDREN = {
    "Deployment": "ReplicaSet",
    "Rollout": "ReplicaSet",
    "StatefulSet": "ControllerRevision",
    "DaemonSet": "ControllerRevision",
}
WATCH_SECONDS = 60
MAX_BACKOFF = 60.0
# Objects per LIST page (kubectl's chunk size): the watcher holds one page's JSON at a time.
PAGE_SIZE = 500


HEARTBEAT_SECONDS = 15.0
# How long a stopping watcher waits for its watch threads before it exits anyway.
STOP_GRACE_SECONDS = 2.0


class Watcher:
    """Observes workloads and records their rollouts in the store."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        policy: Policy,
        clock: Callable[[], datetime],
        *,
        watch_seconds: int = WATCH_SECONDS,
        cluster: str | None = None,
        page_size: int = PAGE_SIZE,
    ):
        self.kube = kube
        self.page_size = page_size
        # The name rollouts are recorded under: this watcher's cluster, else the local one.
        self.cluster = cluster or policy.cluster
        # A watch returns after this long, so a stop request is noticed within it.
        self.watch_seconds = watch_seconds
        self.store = store
        self.policy = policy
        self.clock = clock
        # Workload key -> (revision, complete) already recorded: most events are status
        # updates of a known revision and need no Redis round trip.
        self._seen: dict[str, tuple[str, bool]] = {}

    def kinds(self) -> list[str]:
        """The kinds this cluster serves and Backstop watches."""
        return [*WATCHED, "Rollout"] if self.kube.has_argo_rollouts() else list(WATCHED)

    def scopes(self) -> list[str | None]:
        """Namespaces to watch; None means all of them."""
        return list(self.policy.watch.namespaces) or [None]

    # -- observing -------------------------------------------------------------------------

    def observe(
        self, kind: str, obj: dict, *, rollback_expected: bool | None = None
    ) -> Rollout | None:
        """Record the object's current revision (once) and its completion (once).
        `rollback_expected` is what the store said just before (RolloutStore.recorded):
        False spares the read of an expected rollback; None reads it."""
        meta = obj["metadata"]
        workload = Workload(self.cluster, meta["namespace"], kind, meta["name"])
        complete = is_complete(kind, obj)
        hint = self._revision_hint(kind, obj)
        if hint is not None and self._seen.get(workload.key) == (hint, True):
            return None  # nothing new: same revision, already recorded as complete
        children = self.kube.owned(CHILDREN[kind], obj, brief=brief)
        now = self.clock()
        if CHILDREN[kind] == "ReplicaSet":
            seen = replica_set_revision(kind, obj, children, now, complete)
        else:
            seen = controller_revision(kind, obj, children, now, complete)
        if seen is None:
            return None
        rollout, created = self.store.rollouts.record_observed(
            self._rollout(workload, seen, meta, rollback_expected),
            merge_window=self.policy.watch.ci_merge_window,
        )
        if created:
            log.info(
                "rollout recorded",
                extra={
                    "fields": {
                        "workload": workload.key,
                        "revision": seen.revision,
                        "by_backstop": rollout.by_backstop,
                        "owner": rollout.owner.describe() if rollout.owner else None,
                    }
                },
            )
        if seen.complete and rollout.completed_at is None:
            self.store.rollouts.mark_completed(workload, seen.revision, now)
        self._seen[workload.key] = (seen.revision, seen.complete)
        return rollout

    def observe_page(self, kind: str, objects: list[dict]) -> None:
        """Observe several objects (a LIST page, or one watch event). Those whose announced
        revision the store already holds are settled by one pipelined read for the lot;
        only the others cost a LIST of their ReplicaSets or ControllerRevisions."""
        pending = []
        for obj in objects:
            hint = self._revision_hint(kind, obj)
            if hint is None:
                self.observe(kind, obj)  # StatefulSet/DaemonSet: only their children tell
                continue
            meta = obj["metadata"]
            workload = Workload(self.cluster, meta["namespace"], kind, meta["name"])
            if self._seen.get(workload.key) != (hint, True):
                pending.append((obj, workload, hint))
        if not pending:
            return
        found = self.store.rollouts.recorded([(w, hint) for _, w, hint in pending])
        for (obj, workload, hint), stored in zip(pending, found, strict=True):
            # An expected rollback may mark the stored revision as Backstop's: the full path.
            if not stored.stored or stored.rollback_expected:
                self.observe(kind, obj, rollback_expected=stored.rollback_expected)
                continue
            complete = is_complete(kind, obj)
            if complete and not stored.completed:
                self.store.rollouts.mark_completed(workload, hint, self.clock())
            self._seen[workload.key] = (hint, complete)

    def _rollout(
        self, workload: Workload, seen, metadata: dict, rollback_expected: bool | None = None
    ) -> Rollout:
        # Each Redis round trip here delays a new revision's record (P6's own lag), and the
        # page's pipelined read (RolloutStore.recorded) has just said whether a rollback is
        # expected. Backstop announces a rollback before it patches, so that read, made after
        # the revision was seen, cannot miss the announcement of a rollback that made it.
        expected = (
            None if rollback_expected is False else self.store.rollouts.expected_rollback(workload)
        )
        marks = owners.claims(
            metadata, workload, argocd_namespace=self.policy.owners.argocd.namespace
        )
        ours = expected is not None and expected.get("template_hash") == seen.template_hash
        return Rollout(
            workload=WorkloadRecord.of(workload),
            revision=seen.revision,
            previous_revision=seen.previous_revision,
            images=seen.images,
            change_cause=seen.change_cause,
            started_at=seen.started_at,
            template_hash=seen.template_hash,
            sources=["watcher"],
            by_backstop=ours,
            rollback_of=expected["bad_revision"] if expected is not None and ours else None,
            owner=OwnerRecord.of(marks[0]) if marks else None,
        )

    @staticmethod
    def _revision_hint(kind: str, obj: dict) -> str | None:
        """The revision an object announces about itself, when it does (cheap check)."""
        annotations = obj["metadata"].get("annotations") or {}
        if kind == "Deployment":
            return annotations.get("deployment.kubernetes.io/revision")
        if kind == "Rollout":
            return annotations.get("rollout.argoproj.io/revision")
        return None  # StatefulSet/DaemonSet: only ControllerRevisions tell

    # -- list and watch --------------------------------------------------------------------

    def sync(self, kind: str, namespace: str | None) -> str:
        """List and observe every object of `kind`, page by page; return the list's
        resourceVersion (every page of one list shares it: the watch starts there)."""
        started, objects, resource_version = time.monotonic(), 0, ""
        for page in self.pages(kind, namespace):
            objects += len(page.items)  # after an expired token's restart: counted again
            self.observe_page(kind, page.items)
            resource_version = page.resource_version
        fields = {
            "cluster": self.cluster,
            "kind": kind,
            "namespace": namespace,
            "objects": objects,
            "seconds": round(time.monotonic() - started, 3),
        }
        log.info("listed", extra={"fields": fields})
        return resource_version

    def pages(self, kind: str, namespace: str | None) -> Iterator[Page]:
        """The pages of one consistent LIST of `kind`, each object briefed. A continue token
        that expired (410 Gone: the snapshot was compacted) restarts the list from the
        start, for a consistent one; observing twice is harmless."""
        token = None
        while True:
            try:
                page = self.kube.list_page(
                    kind, namespace, limit=self.page_size, token=token, brief=brief
                )
            except Gone:
                if token is None:
                    raise
                fields = {"cluster": self.cluster, "kind": kind}
                log.info("list page expired; listing again", extra={"fields": fields})
                token = None
                continue
            yield page
            token = page.token
            if token is None:
                return

    def follow(self, kind: str, namespace: str | None, stop: threading.Event) -> None:
        """List, then watch, until stopped; relist after 410 Gone or errors, with backoff."""
        backoff = 1.0
        while not stop.is_set():
            try:
                resource_version = self.sync(kind, namespace)
                backoff = 1.0
                while not stop.is_set():
                    for event, obj in self.kube.watch(
                        kind, namespace, resource_version, seconds=self.watch_seconds
                    ):
                        resource_version = obj["metadata"].get("resourceVersion", resource_version)
                        if event in ("ADDED", "MODIFIED"):
                            self.observe_page(kind, [brief(obj)])
                        if stop.is_set():
                            return
            except Gone:
                fields = {"cluster": self.cluster, "kind": kind}
                log.info("watch expired; listing again", extra={"fields": fields})
            except (IntegrationError, RedisError) as exc:
                level = logging.ERROR if isinstance(exc, PermanentError) else logging.WARNING
                log.log(
                    level,
                    "watch failed; retrying",
                    extra={
                        "fields": {
                            "cluster": self.cluster,
                            "kind": kind,
                            "namespace": namespace,
                            "error": str(exc),
                            "retry_in_s": backoff,
                        }
                    },
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def run(self, stop: threading.Event) -> None:
        """Follow every kind in every scope until `stop` is set."""
        kinds = _retrying(self.kinds, stop, what="discover kinds", cluster=self.cluster)
        threads = [
            threading.Thread(
                target=self.follow,
                args=(kind, scope, stop),
                daemon=True,
                name=f"watch-{self.cluster}-{kind}-{scope or 'all'}",
            )
            for kind in kinds or []
            for scope in self.scopes()
        ]
        for thread in threads:
            thread.start()
        while not stop.wait(HEARTBEAT_SECONDS if self._beat() else 1.0):
            pass
        # A thread blocked in an open watch notices the stop only when the watch ends (up to
        # watch_seconds). Waiting for that would outlast a pod's termination grace period
        # and keep the Lease from being released; the threads are daemons holding nothing
        # worth waiting for (each record is one Redis transaction; a restart relists).
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _beat(self) -> bool:
        """Say the watcher is alive (/metrics shows how long ago); False when Redis is not."""
        try:
            self.store.rollouts.heartbeat(self.clock())
        except RedisError:
            return False
        return True


def watch_clusters(
    clusters: Clusters,
    store: Store,
    policy: Policy,
    clock: Callable[[], datetime],
    stop: threading.Event,
    *,
    watch_seconds: int = WATCH_SECONDS,
) -> None:
    """Watch every guarded cluster, each in its own thread, until `stop` is set."""

    def watch_one(name: str) -> None:
        kube = _retrying(lambda: clusters.kube(name), stop, what="connect", cluster=name)
        if kube is not None:
            Watcher(kube, store, policy, clock, watch_seconds=watch_seconds, cluster=name).run(stop)

    threads = [
        threading.Thread(target=watch_one, args=(name,), daemon=True, name=f"watch-{name}")
        for name in clusters.names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _retrying(call: Callable, stop: threading.Event, *, what: str, cluster: str):
    """`call()`, retried with backoff on integration errors; None once `stop` is set."""
    backoff = 1.0
    while not stop.is_set():
        try:
            return call()
        except IntegrationError as exc:
            level = logging.ERROR if isinstance(exc, PermanentError) else logging.WARNING
            fields = {"cluster": cluster, "error": str(exc), "retry_in_s": backoff}
            log.log(level, "cannot %s; retrying", what, extra={"fields": fields})
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
    return None
