"""Rolling back through Argo CD: freeze auto-sync, then sync the previous history entry.

As `argocd app rollback` does, and for the same reason: while `spec.syncPolicy.automated`
is on, Argo CD re-syncs Git's head (self-heal within seconds), so a rollback first turns
auto-sync off. Backstop sets `automated.enabled: false` (Argo CD 2.14+) and, where the
Application CRD prunes that field (older versions), removes `automated`; either way the
original is kept in the annotation `backstop.io/frozen-automated` and in the freeze record.

Whatever would switch auto-sync back on is frozen too: an ApplicationSet that generated
the Application (an `ignoreApplicationDifferences` entry keeps the child's syncPolicy) and
a parent Application that syncs it from Git (app of apps, found by the parent's tracking
annotation on the child). With `owners.argocd.freeze_parents: false` such a child is not
frozen at all: its rollback is blocked and paged.

The rollback itself is an `operation` on the Application: sync to the `status.history[]`
entry that deployed the target revision (the last whose deploy started no later than the
target went live, by Backstop's record of it or else its ReplicaSet's creation),
initiated by `backstop`, with the rollback id in `info`. Backstop then waits for
`status.operationState` to finish. The freeze ends when Git moves past the revision that
was live (`status.sync.revision` changes), at its expiry, or when a human lifts it.
"""

import json
from datetime import datetime

from core import owners
from core.errors import PermanentError, TransientError
from core.integrations.kubernetes import NotFound
from core.integrations.objects import APPLICATION, APPLICATION_SET
from core.models import Workload
from core.owners import Claim
from core.records import FrozenOwner, Rollback
from core.revisions import parse_time
from workers.owners import Hand, Unfreezable
from workers.preflight import read_revisions

STASH = "backstop.io/frozen-automated"
# Up the app-of-apps chain, at most this far (a loop of parents would otherwise not end).
MAX_PARENTS = 3
POLL_SECONDS = 1.0
FINISHED = {"Succeeded", "Failed", "Error"}


class ArgoCDHand(Hand):
    """Argo CD Applications (and the ApplicationSets and parents that write them)."""

    thaws = ("Application", "ApplicationSet")
    reverts = True

    # -- confirm ----------------------------------------------------------------------------

    def confirm(self, claim: Claim, workload: Workload) -> bool:
        """The Application exists and lists the workload among its resources (a tracking
        id naming this very object is enough while Argo CD has not refreshed yet)."""
        try:
            app = self.get(APPLICATION, claim.namespace, claim.name)
        except NotFound:
            return False
        return claim.certain or listed(app, workload)

    # -- freeze -----------------------------------------------------------------------------

    def freeze(self, claim: Claim, workload: Workload, rollback: Rollback) -> list[FrozenOwner]:
        app = self.get(APPLICATION, claim.namespace, claim.name)
        source = (app.get("status") or {}).get("sync", {}).get("revision", "")
        chain = self._writers(app)
        if len(chain) > 1 and not self.situation.policy.argocd.freeze_parents:
            raise Unfreezable(
                f"Application {claim.namespace}/{claim.name} is written by "
                f"{describe(chain[1])}, and owners.argocd.freeze_parents is off"
            )
        frozen = []
        # Parents first: a parent still syncing would switch the child's auto-sync back on.
        for obj in reversed(chain):
            record = self._freeze_one(obj, app, claim, rollback, source)
            if record is not None:
                frozen.append(record)
        return frozen

    def _writers(self, app: dict) -> list[dict]:
        """The Application, then whatever writes its spec: an ApplicationSet, or a parent
        Application (and its parents) tracking it."""
        chain, current = [app], app
        for _ in range(MAX_PARENTS):
            parent = self._parent(current)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain

    def _parent(self, obj: dict) -> dict | None:
        meta = obj["metadata"]
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "ApplicationSet" and ref.get("controller"):
                return self.get(APPLICATION_SET, meta["namespace"], ref["name"])
        if obj["kind"] != "Application":
            return None
        child = Workload("", meta["namespace"], "Application", meta["name"])
        value = (meta.get("annotations") or {}).get(owners.TRACKING_ID, "")
        claim = owners.tracking_claim(value, child, self.situation.policy.argocd.namespace)
        if claim is None:
            return None
        try:
            return self.get(APPLICATION, claim.namespace, claim.name)
        except NotFound:
            return None  # the parent is gone: nothing re-applies the child

    def _freeze_one(
        self, obj: dict, app: dict, claim: Claim, rollback: Rollback, source: str
    ) -> FrozenOwner | None:
        meta = obj["metadata"]
        key = FrozenOwner.key(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        held = self.situation.store.freezes.get(key)
        if held is not None and held.active:
            return held  # frozen already (a re-run, or an earlier rollback): join it
        if obj["kind"] == "ApplicationSet":
            how, stash = self._freeze_set(obj, app)
        else:
            how, stash = self._freeze_sync(obj)
        if not how:
            return None  # nothing there re-syncs on its own
        stash["application"] = [app["metadata"]["namespace"], app["metadata"]["name"]]
        return self.situation.frozen(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            namespace=meta["namespace"],
            name=meta["name"],
            how=how,
            claim=claim,
            rollback=rollback,
            stash=stash,
            source=source,
        )

    def _freeze_sync(self, app: dict) -> tuple[str, dict]:
        """Switch an Application's auto-sync off; what was done and what thawing restores."""
        original: dict = {}

        def disable(live: dict) -> dict | None:
            automated = (live["spec"].get("syncPolicy") or {}).get("automated")
            if automated is None or automated.get("enabled") is False:
                return None
            original.update(automated)
            return {
                "metadata": {"annotations": {STASH: json.dumps(automated, sort_keys=True)}},
                "spec": {"syncPolicy": {"automated": {"enabled": False}}},
            }

        patched = self.update(APPLICATION, app, disable)
        if patched is None:
            return "", {}
        kept = (patched["spec"].get("syncPolicy") or {}).get("automated") or {}
        if kept.get("enabled") is False:
            return "auto-sync disabled", {"automated": original}
        # This Argo CD's CRD pruned `enabled`: remove `automated` itself.
        self.merge(APPLICATION, patched, {"spec": {"syncPolicy": {"automated": None}}})
        return "auto-sync removed", {"automated": original}

    def _freeze_set(self, appset: dict, app: dict) -> tuple[str, dict]:
        """Keep an ApplicationSet from restoring its child's auto-sync."""
        entry = {"name": app["metadata"]["name"], "jsonPointers": ["/spec/syncPolicy"]}
        policy = (appset["spec"].get("syncPolicy") or {}).get("applicationsSync")
        if policy in ("create-only", "create-delete"):
            return "", {}  # it never updates its children

        def ignore(live: dict) -> dict | None:
            ignored = list(live["spec"].get("ignoreApplicationDifferences") or [])
            if entry in ignored:
                return None
            return {"spec": {"ignoreApplicationDifferences": [*ignored, entry]}}

        self.update(APPLICATION_SET, appset, ignore)
        return "child's syncPolicy ignored", {"ignore": entry}

    # -- revert -----------------------------------------------------------------------------

    def revert(self, claim: Claim, workload: Workload, rollback: Rollback, target: str) -> str:
        app = self.get(APPLICATION, claim.namespace, claim.name)
        reason = f"Backstop rollback {rollback.id}: revision {rollback.bad_revision} -> {target}"
        if not _ours(app.get("operation"), rollback.id) and not _ours(
            _state(app).get("operation"), rollback.id
        ):
            entry = self._history_entry(app, workload, target)
            operation = {
                "sync": {"revision": entry["revision"], "source": entry.get("source") or {}},
                "initiatedBy": {"username": "backstop"},
                "info": [{"name": "Reason", "value": reason}],
            }
            self._wait_idle(claim)
            self.update(APPLICATION, app, lambda live: {"operation": operation})
        state = self._wait_operation(claim, rollback.id)
        revision = (state.get("syncResult") or {}).get("revision", "")
        if state.get("phase") != "Succeeded":
            raise PermanentError(
                f"Argo CD's sync of {claim.namespace}/{claim.name} to {revision[:12]} ended "
                f"{state.get('phase')}: {state.get('message', '')}"
            )
        return f"Argo CD synced {claim.namespace}/{claim.name} to {revision[:12]} (history)"

    def _history_entry(self, app: dict, workload: Workload, target: str) -> dict:
        """The history entry that deployed `target`: the last one whose deploy started no
        later than Backstop saw the target revision go live."""
        rollouts = self.situation.store.rollouts.for_workload(workload)
        seen = next((r.started_at for r in rollouts if r.revision == target), None)
        if seen is None:  # not watched then: its ReplicaSet says when it was first made
            child = read_revisions(self.situation.kube, workload).children.get(target, {})
            seen = parse_time(child.get("metadata", {}).get("creationTimestamp"))
        if seen is None:
            raise PermanentError(f"no record of when revision {target} went live")
        entry = entry_before((app.get("status") or {}).get("history") or [], seen)
        if entry is None:
            raise PermanentError(f"no Argo CD history entry deployed revision {target}")
        return entry

    def _wait_idle(self, claim: Claim) -> None:
        """Wait for an operation someone else started to end (Argo CD runs one at a time)."""
        self._poll(
            claim, lambda app: not app.get("operation") and _state(app).get("phase") != "Running"
        )

    def _wait_operation(self, claim: Claim, rollback_id: str) -> dict:
        app = self._poll(
            claim,
            lambda app: (
                not app.get("operation")
                and _ours(_state(app).get("operation"), rollback_id)
                and _state(app).get("phase") in FINISHED
            ),
        )
        return _state(app)

    def _poll(self, claim: Claim, done) -> dict:
        situation = self.situation
        deadline = situation.clock().timestamp() + situation.operation_timeout.total_seconds()
        while True:
            app = self.get(APPLICATION, claim.namespace, claim.name)
            if done(app):
                return app
            if situation.clock().timestamp() > deadline:
                raise TransientError(f"Argo CD {claim.namespace}/{claim.name}: still busy")
            situation.sleep(POLL_SECONDS)

    # -- after ------------------------------------------------------------------------------

    def moved_past(self, freeze: FrozenOwner) -> str:
        namespace, name = freeze.stash.get("application") or [freeze.namespace, freeze.name]
        try:
            app = self.get(APPLICATION, namespace, name)
        except NotFound:
            return f"Application {namespace}/{name} no longer exists"
        revision = (app.get("status") or {}).get("sync", {}).get("revision", "")
        if revision and freeze.source and revision != freeze.source:
            return f"Git moved from {freeze.source[:12]} to {revision[:12]}"
        return ""

    def thaw(self, freeze: FrozenOwner) -> None:
        ref = APPLICATION_SET if freeze.kind == "ApplicationSet" else APPLICATION
        obj = self.get(ref, freeze.namespace, freeze.name)
        if freeze.kind == "ApplicationSet":
            ignored = obj["spec"].get("ignoreApplicationDifferences") or []
            kept = [entry for entry in ignored if entry != freeze.stash.get("ignore")]
            if kept != ignored:
                self.merge(ref, obj, {"spec": {"ignoreApplicationDifferences": kept or None}})
            return
        automated = dict(freeze.stash.get("automated") or {})
        automated.setdefault("enabled", None)  # null deletes the `enabled: false` we set
        self.merge(
            ref,
            obj,
            {
                "metadata": {"annotations": {STASH: None}},
                "spec": {"syncPolicy": {"automated": automated}},
            },
        )


def listed(app: dict, workload: Workload) -> bool:
    """Does the Application list the workload among its managed resources?"""
    group = owners.GROUPS.get(workload.kind, "")
    destination = app["spec"].get("destination", {}).get("namespace", "")
    return any(
        r.get("kind") == workload.kind
        and r.get("name") == workload.name
        and r.get("group", "") == group
        and (r.get("namespace") or destination) == workload.namespace
        for r in (app.get("status") or {}).get("resources") or []
    )


def describe(obj: dict) -> str:
    return f"{obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _state(app: dict) -> dict:
    return (app.get("status") or {}).get("operationState") or {}


def _ours(operation: dict | None, rollback_id: str) -> bool:
    """Is this the operation Backstop set for this rollback?"""
    info = (operation or {}).get("info") or []
    return any(rollback_id in str(item.get("value", "")) for item in info)


def entry_before(history: list[dict], live_since: datetime) -> dict | None:
    """The last history entry whose deploy started no later than `live_since` (to the
    second, as Argo CD writes its times); entries without a time never qualify."""
    cutoff = live_since.replace(microsecond=0)
    started = [(parse_time(e.get("deployStartedAt") or e.get("deployedAt")), e) for e in history]
    before = [entry for when, entry in started if when is not None and when <= cutoff]
    return before[-1] if before else None
