"""Argo Rollouts: Backstop aborts through the status subresource, then reverts the template.

No Argo controller runs here: the test plays its part (marks the reverted Rollout healthy),
as the pod helper plays the kubelet's.
"""

import threading
from pathlib import Path

import pytest
from kubernetes import client

from core.integrations.kubernetes import ARGO
from core.models import Workload
from tests.conftest import wait_for
from tests.workloads import FAST

pytestmark = pytest.mark.integration

CRD = Path(__file__).resolve().parents[1] / "manifests" / "argo-rollouts-crd.yaml"


@pytest.fixture(scope="module")
def argo_crd(kube):
    # Kept afterwards: other modules (and reruns against a real cluster) expect it.
    with kube.crds(CRD, keep=("rollouts.argoproj.io",)), kube.api_client() as api:
        wait_for(lambda: served(api), message="the Rollout API to be served")
        yield


def served(api) -> bool:
    """The apiserver serves the new resource (it may drop connections while it starts to)."""
    try:
        client.CustomObjectsApi(api).list_cluster_custom_object(*ARGO)
    except Exception:
        return False
    return True


def template(image: str) -> dict:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def bad_rollout(stack, annotations: dict | None = None) -> Workload:
    """A Rollout `web` at bad revision 2 over its stable revision 1 (both ReplicaSets
    made as Argo's controller makes them), recorded by the watcher."""
    custom = client.CustomObjectsApi(stack.api)
    ns = stack.namespace
    rollout = custom.create_namespaced_custom_object(
        *ARGO[:2],
        ns,
        ARGO[2],
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {
                "name": "web",
                "annotations": {"rollout.argoproj.io/revision": "2", **(annotations or {})},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template("shop/web:2"),
                "strategy": {"canary": {}},
            },
        },
    )
    owner = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "web",
        "uid": rollout["metadata"]["uid"],
        "controller": True,
    }
    for revision, image, replicas in (("1", "shop/web:1", 0), ("2", "shop/web:2", 1)):
        labels = {"app": "web", "rollouts-pod-template-hash": f"h{revision}"}
        stack.apps.create_namespaced_replica_set(
            ns,
            {
                "metadata": {
                    "name": f"web-h{revision}",
                    "labels": labels,
                    "ownerReferences": [owner],
                    "annotations": {"rollout.argoproj.io/revision": revision},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {**template(image), "metadata": {"labels": labels}},
                },
            },
        )
    stack.record_history("Rollout")
    return Workload("default", ns, "Rollout", "web")


def test_rollout_is_aborted_and_reverted(argo_crd, make_stack):
    stack = make_stack(FAST)
    custom = client.CustomObjectsApi(stack.api)
    ns = stack.namespace
    workload = bad_rollout(stack)
    decision = stack.alert(workload)
    assert decision.outcome == "rollback" and decision.rollout.revision == "2"

    def play_argo():
        """Once aborted and reverted, do what the Argo controller would: go healthy on rev 3."""

        def reverted():
            current = custom.get_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], "web")
            image = current["spec"]["template"]["spec"]["containers"][0]["image"]
            return current.get("status", {}).get("abort") and image == "shop/web:1"

        wait_for(reverted, message="abort and revert")
        stack.apps.patch_namespaced_replica_set(
            "web-h1", ns, {"metadata": {"annotations": {"rollout.argoproj.io/revision": "3"}}}
        )
        custom.patch_namespaced_custom_object(
            *ARGO[:2],
            ns,
            ARGO[2],
            "web",
            {"metadata": {"annotations": {"rollout.argoproj.io/revision": "3"}}},
        )
        custom.patch_namespaced_custom_object_status(
            *ARGO[:2],
            ns,
            ARGO[2],
            "web",
            {"status": {"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}},
        )

    argo = threading.Thread(target=play_argo, daemon=True)
    argo.start()
    rollback = stack.roll_back(decision)
    argo.join(timeout=30)
    assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
    assert rollback.patch_type == "merge,json"
    assert rollback.patch[0] == {"status": {"abort": True}}
    current = custom.get_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], "web")
    assert current["status"]["abort"] is True
    assert current["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1"
    assert rollback.created_revision == "3"


def test_a_rollout_argo_cd_tracks_is_aborted_never_undone(argo_crd, make_stack):
    # Argo CD would re-apply an undone template (and start a new canary); the abort lives
    # in the status, which it leaves alone. argo_undo is on (the default): still abort only.
    stack = make_stack(FAST)
    custom = client.CustomObjectsApi(stack.api)
    ns = stack.namespace
    tracking = {"argocd.argoproj.io/tracking-id": f"web:argoproj.io/Rollout:{ns}/web"}
    workload = bad_rollout(stack, tracking)
    decision = stack.alert(workload)
    assert decision.rollout.owner.kind == "argocd"

    def play_argo():
        """Aborted: scale the stable ReplicaSet back up, as Argo's controller does."""
        wait_for(
            lambda: (
                custom.get_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], "web")
                .get("status", {})
                .get("abort")
            ),
            message="abort",
        )
        stack.apps.patch_namespaced_replica_set("web-h1", ns, {"spec": {"replicas": 1}})
        custom.patch_namespaced_custom_object_status(
            *ARGO[:2],
            ns,
            ARGO[2],
            "web",
            {"status": {"phase": "Degraded", "stableRS": "h1", "currentPodHash": "h2"}},
        )

    argo = threading.Thread(target=play_argo, daemon=True)
    argo.start()
    rollback = stack.roll_back(decision)
    argo.join(timeout=30)
    assert rollback.status == "verified", rollback.reason
    assert rollback.aborted_only and rollback.owner.kind == "argocd"
    assert (rollback.patch_type, rollback.patch) == ("merge", {"status": {"abort": True}})
    current = custom.get_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], "web")
    assert current["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:2"
    assert rollback.step("rollout").detail == "aborted: back on the stable pods"
