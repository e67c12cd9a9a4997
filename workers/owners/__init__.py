"""Rolling back through a workload's owner, so the revert sticks (docs/owners.md).

A `Hand` acts through one kind of owner (core/owners.py's kinds). For a rollback of a
workload its owner reconciles, the rollback job asks the hand, in order:

1. `confirm`: does the owner really hold the workload (an Application listing it among its
   `status.resources`, a Helm release Secret)? Unconfirmed marks leave the workload to
   Backstop alone.
2. `freeze`: stop the owner (and whatever would re-enable it: an ApplicationSet, a parent
   Application, an image automation) from putting the bad version back. Each frozen
   object is a `FrozenOwner` record with what thawing restores. `Unfreezable` when it
   cannot: the rollback is `blocked: owner_not_frozen` and paged, never reverted behind
   the owner's back.
3. `revert` when the owner itself rolls back (Argo CD syncs an older history entry);
   otherwise Backstop patches the workload as for any other, then
4. `recorded`: the owner's own record of the rollback (Helm's release N+1).

Later, the freeze review (workers/freezes.py) asks `moved_past` of each active freeze and
`thaw`s it when the source moved past the bad revision, at its expiry, or when a human
lifts it. Every step is idempotent: a rollback job re-run after a crash repeats it safely.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from config.owners import OwnersPolicy
from core.integrations.kubernetes import Conflict, Kube
from core.integrations.objects import Objects, Ref
from core.models import Workload
from core.owners import Claim
from core.records import FrozenOwner, OwnerRecord, Rollback
from core.store import Store

# Owners write their own status all the time: a conditional write is tried this often.
CONFLICT_ATTEMPTS = 5


class Unfreezable(Exception):
    """The owner cannot be frozen (or the policy forbids it): the rollback is blocked."""


@dataclass
class Situation:
    """What every hand works with."""

    kube: Kube
    objects: Objects
    store: Store
    policy: OwnersPolicy
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    # How long an owner may take to run the rollback it was asked for (Argo CD's sync).
    operation_timeout: timedelta = timedelta(minutes=5)

    def frozen(
        self,
        *,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        how: str,
        claim: Claim,
        rollback: Rollback,
        stash: dict | None = None,
        source: str = "",
    ) -> FrozenOwner:
        """The record of a freeze this rollback makes now (saved by the caller)."""
        now = self.clock()
        return FrozenOwner(
            id=FrozenOwner.key(api_version, kind, namespace, name),
            api_version=api_version,
            kind=kind,
            namespace=namespace,
            name=name,
            how=how,
            owner=OwnerRecord.of(claim),
            workload=rollback.workload,
            rollback_id=rollback.id,
            bad_revision=rollback.bad_revision,
            reason=f"rollback {rollback.id} of {rollback.workload.workload().key} "
            f"revision {rollback.bad_revision}",
            stash=stash or {},
            source=source,
            frozen_at=now,
            expires_at=now + self.policy.freeze_ttl,
        )


class Hand:
    """Acting through one kind of owner. The defaults suit an owner with nothing to freeze."""

    # The FrozenOwner kinds this hand thaws.
    thaws: tuple[str, ...] = ()
    # True when the owner itself rolls the workload back (`revert`).
    reverts = False

    def __init__(self, situation: Situation):
        self.situation = situation

    def confirm(self, claim: Claim, workload: Workload) -> bool:
        """Does the owner hold the workload? A certain mark needs no more."""
        return claim.certain

    def freeze(self, claim: Claim, workload: Workload, rollback: Rollback) -> list[FrozenOwner]:
        """Freeze the owner; the records of what was frozen. Raises Unfreezable."""
        return []

    def revert(self, claim: Claim, workload: Workload, rollback: Rollback, target: str) -> str:
        """Have the owner roll the workload back to `target`; a sentence saying how."""
        raise NotImplementedError

    def recorded(self, claim: Claim, workload: Workload, rollback: Rollback, target: str) -> str:
        """After Backstop's revert: the owner's own record of it; a sentence, or ""."""
        return ""

    def moved_past(self, freeze: FrozenOwner) -> str:
        """A sentence when the owner's source moved past the bad revision, else ""."""
        return ""

    def thaw(self, freeze: FrozenOwner) -> None:
        """Undo a freeze: put back what `stash` holds. Idempotent."""
        raise NotImplementedError

    # -- access, shared by the hands ---------------------------------------------------------

    def get(self, ref: Ref, namespace: str, name: str) -> dict:
        """One owner object; NotFound when it does not exist."""
        return self.situation.objects.get(ref, namespace, name)

    def merge(self, ref: Ref, obj: dict, body: dict) -> dict:
        """A JSON merge patch of `obj`; the object as patched."""
        meta = obj["metadata"]
        return self.situation.objects.merge(ref, meta["namespace"], meta["name"], body)

    def update(self, ref: Ref, obj: dict, change: Callable[[dict], dict | None]) -> dict | None:
        """Read-modify-write: `change(live)` gives a merge patch (None: nothing to do), sent
        conditional on the version read; an owner writing its status meanwhile is met by
        reading again. The object as patched, or None when there was nothing to do."""
        meta = obj["metadata"]
        for _ in range(CONFLICT_ATTEMPTS):
            live = self.get(ref, meta["namespace"], meta["name"])
            body = change(live)
            if body is None:
                return None
            body.setdefault("metadata", {})["resourceVersion"] = live["metadata"]["resourceVersion"]
            try:
                return self.merge(ref, live, body)
            except Conflict:
                continue
        raise Conflict(f"{obj['kind']} {meta['namespace']}/{meta['name']} kept changing")
