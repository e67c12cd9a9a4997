"""A template revert takes the workload's annotations from the target ReplicaSet, as
`kubectl rollout undo` does, except those that describe the workload as it is now:
kubectl's own and the owners' marks, which stay as they are live."""

from core.owners import TRACKING_ID
from workers.revert import template_revert

RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"


def revert(live: dict, target: dict) -> dict:
    owner = {"metadata": {"resourceVersion": "7", "annotations": live}}
    rs = {
        "metadata": {"annotations": target},
        "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}}},
    }
    ops = template_revert("Deployment", owner, rs).body
    assert isinstance(ops, list)
    return next(op["value"] for op in ops if op["path"] == "/metadata/annotations")


def test_owner_marks_stay_as_they_are_live():
    tracking = "shop:apps/Deployment:shop/web"
    annotations = revert(
        {TRACKING_ID: tracking, RECONCILE: "disabled", "deployment.kubernetes.io/revision": "2"},
        {"kubernetes.io/change-cause": "ship web:1", "deployment.kubernetes.io/revision": "1"},
    )
    assert annotations == {
        TRACKING_ID: tracking,
        RECONCILE: "disabled",
        "deployment.kubernetes.io/revision": "2",
        "kubernetes.io/change-cause": "ship web:1",
    }


def test_an_owner_mark_gone_from_the_workload_is_not_brought_back():
    # The owner let go of the workload after the target revision: its old mark stays gone.
    annotations = revert({}, {TRACKING_ID: "old:apps/Deployment:shop/web", "team": "a"})
    assert annotations == {"team": "a"}
