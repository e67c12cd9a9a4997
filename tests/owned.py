"""Helpers for rollbacks of workloads an owner reconciles (tests/integration/test_*_rollbacks
and test_owned_rollbacks): the bad release, the blocked case, the settle check, and the
freeze review with the real hands."""

import time

from core.integrations.objects import Objects
from core.models import Workload
from core.records import utcnow
from tests.conftest import wait_for
from tests.gitops_fixtures import image
from workers import freezes
from workers.owners import Situation, registry

# How long the good version must survive the owner's reconcile loops after a rollback: 15 s
# are seven of the stand-ins' 2 s cycles (a Flux object's `spec.interval`, Argo CD's
# self-heal timeout), each of which would put the bad version back if the freeze did not hold.
SETTLE = 15.0


def released(stack, api, namespace) -> Workload:
    """Revision 2 (shop/web:2, the bad one) live and recorded; the workload."""
    wait_for(lambda: image(api, namespace) == "shop/web:2", message="the bad release applied")
    wait_for(lambda: stack.revision("web") == "2", message="revision 2")
    stack.record_history("Deployment")
    return Workload("default", namespace, "Deployment", "web")


def assert_blocked_and_untouched(stack, api, namespace, workload, owner_kind):
    """The rollback is blocked before any step touched the cluster; the rollback."""
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    assert decision.rollout.owner.kind == owner_kind and decision.rollout.owner.confirmed
    rollback = stack.roll_back(decision)
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert rollback.owner.kind == owner_kind
    assert image(api, namespace) == "shop/web:2" and stack.revision("web") == "2"
    return rollback


def holds(controller, api, namespace, wanted: str, seconds: float = SETTLE) -> None:
    """The workload keeps running `wanted` through `seconds` of the owner's reconcile
    passes (each pass re-reads Git and would put the bad version back if it could)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        controller.wait_passes(3)
        assert image(api, namespace) == wanted
    assert not controller.errors


def review(stack) -> dict[str, int]:
    """One freeze review with the real hands; how many freezes ended how."""
    situation = Situation(
        stack.kube, Objects(stack.api), stack.store, stack.policy.owners, utcnow, time.sleep
    )
    return freezes.review_freezes(
        stack.store, lambda freeze: registry.thawing_hand(freeze, situation), clock=utcnow
    )
