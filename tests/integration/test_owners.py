"""Workloads another tool reconciles (Argo CD, Flux, Helm): Backstop records the owner,
never reverts behind its back, and notices when a revert it made was put back.

Here no owner runs: a mark that proves an owner which cannot be found blocks the rollback
(`blocked: owner_not_frozen`, paged) rather than reverting behind an owner Backstop may be
looking for in the wrong place. Rolling back through running owners: test_owned_rollbacks,
test_flux_rollbacks and test_helm_rollbacks.
"""

import threading

import pytest

from tests.conftest import wait_for
from tests.workloads import FAST, bad_release, set_image

pytestmark = pytest.mark.integration

TRACKING = "argocd.argoproj.io/tracking-id"


def test_a_sure_mark_whose_owner_is_not_found_blocks_not_reverts(make_stack):
    stack = make_stack(FAST)
    tracking = f"shop:apps/Deployment:{stack.namespace}/checkout"
    workload = bad_release(stack, marks={"annotations": {TRACKING: tracking}})
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    assert (decision.rollout.owner.kind, decision.rollout.owner.name) == ("argocd", "shop")
    assert decision.rollout.owner.confirmed

    rollback = stack.roll_back(decision)
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert rollback.owner.kind == "argocd" and rollback.owner.found_by == f"annotation {TRACKING}"
    assert not rollback.preflight["owner"]["ok"]
    # No Application argocd/shop exists: a sure mark whose owner cannot be found blocks
    # rather than reverting behind an owner Backstop may merely be looking for wrongly.
    assert "not found holding it" in rollback.preflight["owner"]["detail"]
    assert stack.image("checkout") == "shop/checkout:2"  # nothing was patched
    assert rollback.incident_job_id  # a blocked rollback is filed and paged


@pytest.mark.parametrize(
    "marks",
    [
        {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}},
        {"labels": {"helm.toolkit.fluxcd.io/name": "shop"}},
    ],
    ids=["flux-kustomization", "flux-helmrelease"],
)
def test_a_flux_owner_that_is_not_found_blocks(make_stack, marks):
    stack = make_stack(FAST)
    workload = bad_release(stack, marks=marks)
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert "not found holding it" in rollback.preflight["owner"]["detail"]
    assert stack.image("checkout") == "shop/checkout:2"


def test_a_mark_that_only_names_a_candidate_does_not_block(make_stack):
    # Helm charts set app.kubernetes.io/instance to the release name: alone, it proves no
    # Argo CD Application holds the workload.
    stack = make_stack(FAST)
    marks = {
        "labels": {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "Helm"}
    }
    workload = bad_release(stack, marks=marks)
    decision = stack.alert(workload)
    assert decision.rollout.owner.kind == "argocd" and not decision.rollout.owner.confirmed
    rollback = stack.roll_back(decision)
    assert rollback.status == "verified" and rollback.owner is None
    assert "unconfirmed: argocd" in rollback.preflight["owner"]["detail"]


def test_a_revert_put_back_by_another_writer_fails_verification(make_stack):
    # A reconciler nobody marked the workload for (a pipeline, a script, an unmarked GitOps
    # tool) re-applies the bad image as soon as Backstop's revert appears.
    stack = make_stack(FAST)
    workload = bad_release(stack)
    decision = stack.alert(workload)
    stop = threading.Event()

    def reconcile():
        while not stop.is_set():
            if stack.image("checkout") == "shop/checkout:1":
                set_image(stack.apps, stack.namespace, "checkout", "shop/checkout:2")
                return
            stop.wait(0.02)

    writer = threading.Thread(target=reconcile, daemon=True)
    writer.start()
    try:
        rollback = stack.roll_back(decision)
    finally:
        stop.set()
        writer.join(timeout=5)
    assert (rollback.status, rollback.reason) == ("verification_failed", "reverted_by_other")
    assert rollback.step("verify").status == "failed"
    assert stack.image("checkout") == "shop/checkout:2"
    # Frozen for humans, as every failed verification is.
    assert stack.store.automation.paused(workload) is not None
    # The writer's template is revision 4, or still 2 when it put the bad image back before
    # the Deployment controller ever saw the revert (a race the writer may win).
    wait_for(lambda: stack.revision("checkout") in ("2", "4"), message="the writer's revision")
