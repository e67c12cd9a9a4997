"""Rollbacks of workloads Flux reconciles, with the Flux stand-ins running (testbed/gitops):
Backstop stops the Kustomization or HelmRelease (and the image automation that writes their
Git) before it reverts, the good version survives a minute of reconcile passes, and the
freeze ends once the source moves past the bad revision, the new version then applied.
"""

import pytest
import yaml

from core.owners import FLUX_RECONCILE, FROZEN_BY
from testbed.gitops import flux
from testbed.gitops.imageautomation import ImageAutomation, image_update_automation
from tests.conftest import wait_for
from tests.gitops_fixtures import WEB, chart_setup, create, image, manifest, patch, read
from tests.owned import assert_blocked_and_untouched, holds, released, review
from tests.workloads import FAST

pytestmark = pytest.mark.integration


def kustomized(make_stack, api, gitops, git_repo, namespace, owners=None, web=None):
    """web 1 then web 2 applied by the Kustomization `apps` (interval 1 s) from the
    GitRepository `repo`, source- and kustomize-controller running; the stack, the
    kustomize-controller and the workload."""
    stack = make_stack({**FAST, "owners": owners or {}})
    git_repo.commit({WEB: web or manifest("web", "shop/web:1")}, "web 1")
    create(api, namespace, flux.git_repository("repo", git_repo.url, interval="1s"))
    gitops(flux.SourceController)
    controller = gitops(flux.KustomizeController)
    create(api, namespace, flux.kustomization("apps", "repo", "apps", interval="1s"))
    wait_for(lambda: image(api, namespace) == "shop/web:1", message="web 1 applied")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    return stack, controller


def verified(stack, workload):
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    names = [s.name for s in rollback.steps]
    # A 409 on the revert (the workload moved meanwhile) re-runs pre-flight in between.
    assert names.index("owner") < names.index("revert")
    return rollback


def ends_when_git_moves(stack, api, git_repo, namespace):
    """A review keeps the freeze while Git is at the bad commit; a new commit (web 3)
    ends it and Flux applies it."""
    assert review(stack)["kept"] >= 1
    git_repo.set_image(WEB, "web", "shop/web:3")
    wait_for(lambda: review(stack)["moved_past"] >= 1, message="the review seeing Git move")
    assert stack.store.freezes.active() == []
    (ended,) = stack.store.freezes.recent(limit=1)
    assert ended.end == "moved_past" and "Git moved from main@sha1:" in ended.end_reason
    wait_for(lambda: image(api, namespace) == "shop/web:3", message="web 3 applied")


def test_kustomization_excludes_only_the_workload(
    make_stack, api, gitops, git_repo, kube_namespace
):
    stack, controller = kustomized(make_stack, api, gitops, git_repo, kube_namespace)
    git_repo.set_image(WEB, "web", "shop/web:2")
    rollback = verified(stack, released(stack, api, kube_namespace))
    assert rollback.owner.kind == "kustomization"
    assert "reconcile disabled on the workload" in rollback.step("owner").detail
    live = api.get("apps/v1", "Deployment", kube_namespace, "web")
    marks = live["metadata"]["annotations"]
    assert marks[FLUX_RECONCILE] == "disabled" and marks[FROZEN_BY] == rollback.id
    ks = api.get(flux.KUSTOMIZE_API, "Kustomization", kube_namespace, "apps")
    assert not ks["spec"].get("suspend")  # the rest of the Kustomization keeps reconciling
    (freeze,) = stack.store.freezes.active()
    assert (freeze.kind, freeze.name) == ("Deployment", "web")
    assert freeze.source == ks["status"]["lastAppliedRevision"]  # the bad commit
    holds(controller, api, kube_namespace, "shop/web:1")
    ends_when_git_moves(stack, api, git_repo, kube_namespace)
    annotations = api.get("apps/v1", "Deployment", kube_namespace, "web")["metadata"]
    assert FLUX_RECONCILE not in annotations.get("annotations", {})


def test_kustomization_suspended_whole(make_stack, api, gitops, git_repo, kube_namespace):
    owners = {"kustomization": {"suspend": "kustomization"}}
    stack, controller = kustomized(make_stack, api, gitops, git_repo, kube_namespace, owners)
    git_repo.set_image(WEB, "web", "shop/web:2")
    rollback = verified(stack, released(stack, api, kube_namespace))
    ks = api.get(flux.KUSTOMIZE_API, "Kustomization", kube_namespace, "apps")
    assert ks["spec"]["suspend"] is True
    assert ks["metadata"]["annotations"][FROZEN_BY] == rollback.id
    holds(controller, api, kube_namespace, "shop/web:1")
    ends_when_git_moves(stack, api, git_repo, kube_namespace)
    ks = api.get(flux.KUSTOMIZE_API, "Kustomization", kube_namespace, "apps")
    assert "suspend" not in ks["spec"] and FROZEN_BY not in ks["metadata"]["annotations"]
    assert flux.REQUESTED_AT in ks["metadata"]["annotations"]  # asked to reconcile at once


def test_helmrelease_with_drift_detection(make_stack, api, gitops, git_repo, kube_namespace):
    """Drift detection on: helm-controller would put the bad release back at its next
    pass; suspended, it does not. New values end the freeze and are released."""
    stack = make_stack(FAST)
    drift = {"driftDetection": {"mode": "enabled"}}
    controller, hr = chart_setup(
        api, gitops, git_repo, kube_namespace, {"image": "shop/web:1"}, **drift
    )
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    patch(api, kube_namespace, hr, {"spec": {"values": {"image": "shop/web:2"}}})
    rollback = verified(stack, released(stack, api, kube_namespace))
    assert rollback.owner.kind == "helmrelease"
    assert read(api, kube_namespace, hr)["spec"]["suspend"] is True
    (freeze,) = stack.store.freezes.active()
    assert (freeze.kind, freeze.how) == ("HelmRelease", "suspended")
    holds(controller, api, kube_namespace, "shop/web:1")
    assert review(stack)["kept"] == 1
    patch(api, kube_namespace, hr, {"spec": {"values": {"image": "shop/web:3"}}})
    assert review(stack)["moved_past"] == 1
    (ended,) = stack.store.freezes.recent(limit=1)
    assert "has new values or chart" in ended.end_reason
    wait_for(lambda: image(api, kube_namespace) == "shop/web:3", message="web 3 released")
    assert not controller.errors


def automated_web(namespace: str) -> str:
    """web 1 in Git with the image policy setter that image automation rewrites."""
    setter = f'# {{"$imagepolicy": "{namespace}:web"}}'
    text = yaml.safe_dump(manifest("web", "shop/web:1"), sort_keys=False)
    return text.replace("image: shop/web:1", f"image: shop/web:1 {setter}")


def promoted(make_stack, api, gitops, git_repo, namespace, owners=None):
    """web 2 promoted into Git by image automation (its policy's latest tag), applied by
    the Kustomization; the stack, both controllers and the workload."""
    web = automated_web(namespace)
    stack, controller = kustomized(make_stack, api, gitops, git_repo, namespace, owners, web)
    automation = gitops(ImageAutomation)
    automation.policies[f"{namespace}:web"] = "shop/web:2"
    create(api, namespace, image_update_automation("web", "repo", "apps", "1s"))
    return stack, controller, automation, released(stack, api, namespace)


def test_image_automation_is_suspended_too(make_stack, api, gitops, git_repo, kube_namespace):
    stack, controller, automation, workload = promoted(
        make_stack, api, gitops, git_repo, kube_namespace
    )
    rollback = verified(stack, workload)
    assert "ImageUpdateAutomation" in rollback.step("owner").detail
    body = api.get(ImageAutomation.api, "ImageUpdateAutomation", kube_namespace, "web")
    assert body["spec"]["suspend"] is True
    head = git_repo.head()
    holds(controller, api, kube_namespace, "shop/web:1")
    assert git_repo.head() == head and not automation.errors
    kinds = sorted(f.kind for f in stack.store.freezes.active())
    assert kinds == ["Deployment", "ImageUpdateAutomation"]


def test_image_automation_switched_off_blocks(make_stack, api, gitops, git_repo, kube_namespace):
    owners = {"image_automation": {"enabled": False}}
    stack, _, _, workload = promoted(make_stack, api, gitops, git_repo, kube_namespace, owners)
    rollback = assert_blocked_and_untouched(stack, api, kube_namespace, workload, "kustomization")
    assert "owners.image_automation.enabled is off" in rollback.step("owner").detail
    assert stack.store.freezes.active() == []
    live = api.get("apps/v1", "Deployment", kube_namespace, "web")
    assert FLUX_RECONCILE not in (live["metadata"].get("annotations") or {})
