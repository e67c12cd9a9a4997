"""Which hand acts through which owner, which thaws which frozen object, and the freeze
that opens a rollback through an owner."""

import redis

from core import queues
from core.models import Workload
from core.owners import Claim
from core.records import FrozenOwner, Rollback
from core.store import Store
from workers.owners import Hand, Situation
from workers.owners.argocd import ArgoCDHand
from workers.owners.flux import HelmReleaseHand, KustomizationHand
from workers.owners.helm import HelmHand

HANDS: dict[str, type[Hand]] = {
    "argocd": ArgoCDHand,
    "kustomization": KustomizationHand,
    "helmrelease": HelmReleaseHand,
    "helm": HelmHand,
}


def hand_for(kind: str, situation: Situation) -> Hand | None:
    """The hand for an owner kind (core/owners.py's OwnerKind); None when Backstop cannot
    act through that kind of owner yet."""
    hand = HANDS.get(kind)
    return hand(situation) if hand is not None else None


def thawing_hand(freeze: FrozenOwner, situation: Situation) -> Hand:
    """The hand that thaws a frozen object, by the object's kind."""
    for hand in HANDS.values():
        if freeze.kind in hand.thaws:
            return hand(situation)
    raise KeyError(f"no hand thaws a {freeze.kind}")


def freeze_owner(
    store: Store,
    connection: redis.Redis,
    hand: Hand,
    claim: Claim,
    workload: Workload,
    rollback: Rollback,
) -> str:
    """Freeze a workload's owner before its revert, each frozen object recorded and the
    freeze review scheduled; a sentence saying what was frozen. Raises Unfreezable."""
    frozen = hand.freeze(claim, workload, rollback)
    for freeze in frozen:
        store.freezes.save(freeze)
    if frozen:
        queues.schedule_freeze_review(connection)
    what = ", ".join(f.describe() for f in frozen) or "nothing (it re-applies nothing by itself)"
    return f"{claim.kind} {claim.namespace}/{claim.name}: froze {what}"
