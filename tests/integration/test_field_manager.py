"""Backstop's own writes carry the field manager `backstop`, and a revert keeps the marks an
owner (Argo CD, Flux, Helm) put on the workload: `kubectl get --show-managed-fields` says
who changed the template, and the owner still knows its workload afterwards.

A valid Argo CD tracking id blocks a direct revert (pre-flight, owner_not_frozen; see
test_owners.py), so the marks here are those that let it through: Argo CD's tracking label,
put on from the start (the ReplicaSets carry it), and, put on after the bad release, Helm's
release annotations (unconfirmed without a release Secret) and Flux's per-object off switch,
as a Kustomization freeze in `workload` mode sets it just before the revert.
"""

import pytest
from kubernetes import client

from core.integrations.kubernetes import FIELD_MANAGER
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

INSTANCE = "app.kubernetes.io/instance"
RELEASE = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"


def test_a_revert_is_backstops_and_keeps_the_owners_marks(make_stack):
    stack = make_stack(FAST)
    workload = bad_release(stack, marks={"labels": {INSTANCE: "shop"}})
    late = {RELEASE[0]: "shop", RELEASE[1]: stack.namespace, RECONCILE: "disabled"}
    stack.apps.patch_namespaced_deployment(
        "checkout", stack.namespace, {"metadata": {"annotations": late}}
    )
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", rollback.reason
    assert stack.image("checkout") == "shop/checkout:1"

    live = client.ApiClient().sanitize_for_serialization(
        stack.apps.read_namespaced_deployment("checkout", stack.namespace)
    )
    entries = [e for e in live["metadata"]["managedFields"] if e["manager"] == FIELD_MANAGER]
    assert [e["operation"] for e in entries] == ["Update"]
    assert "f:template" in entries[0]["fieldsV1"]["f:spec"]
    assert live["metadata"]["labels"][INSTANCE] == "shop"
    annotations = live["metadata"]["annotations"]
    assert {k: annotations.get(k) for k in late} == late
    assert annotations["kubernetes.io/change-cause"] == "ship shop/checkout:1"  # as rollout undo
