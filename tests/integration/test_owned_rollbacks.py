"""Rollbacks of workloads an owner reconciles, with the owners' stand-ins running
(testbed/gitops): Backstop finds the owner from the marks the owner itself left, and does
not revert behind its back — the revert would be undone within seconds while Backstop
reported it verified. Until rollbacks go through the owner, such a rollback is
`blocked: owner_not_frozen` (filed and paged) and the owner's state is left as it was.
"""

import time

import pytest

from core.integrations.objects import Objects
from core.models import Workload
from core.records import utcnow
from testbed.gitops import argocd, flux
from testbed.gitops.appset import ApplicationSets, application_set
from testbed.gitops.cluster import Cluster
from tests.conftest import wait_for
from tests.gitops_fixtures import WEB, create, image, manifest
from tests.workloads import FAST
from workers import freezes
from workers.owners import Situation, registry

pytestmark = pytest.mark.integration

# How long the good version must survive the owner's reconcile loops after a rollback.
SETTLE = 60.0


@pytest.fixture
def api(kube, gitops_crds):
    with Cluster(kube.api_client()) as cluster:
        yield cluster


def released(stack, api, namespace) -> Workload:
    """Revision 2 (shop/web:2, the bad one) live and recorded; the workload."""
    wait_for(lambda: image(api, namespace) == "shop/web:2", message="the bad release applied")
    wait_for(lambda: stack.revision("web") == "2", message="revision 2")
    stack.record_history("Deployment")
    return Workload("default", namespace, "Deployment", "web")


def assert_blocked_and_untouched(stack, api, namespace, workload, owner_kind):
    decision = stack.alert(workload)
    assert decision.outcome == "rollback"
    assert decision.rollout.owner.kind == owner_kind and decision.rollout.owner.confirmed
    rollback = stack.roll_back(decision)
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert rollback.owner.kind == owner_kind
    assert [s.name for s in rollback.steps] == ["lock", "preflight"]
    assert image(api, namespace) == "shop/web:2" and stack.revision("web") == "2"


def argo_stack(make_stack, namespace):
    """A stack whose Argo CD lives in the test namespace (the stand-in's Applications)."""
    return make_stack({**FAST, "owners": {"argocd": {"namespace": namespace}}})


def holds(controller, api, namespace, wanted: str, seconds: float = SETTLE) -> None:
    """The workload keeps running `wanted` through `seconds` of the owner's reconcile
    passes (each pass re-reads Git and would put the bad version back if it could)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        controller.wait_passes(3)
        assert image(api, namespace) == wanted
    assert not controller.errors


def test_argo_cd_with_self_heal(make_stack, api, gitops, git_repo, kube_namespace):
    stack = argo_stack(make_stack, kube_namespace)
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    argo = gitops(argocd.ArgoCD, self_heal_timeout=2.0)
    create(
        api,
        kube_namespace,
        argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace),
    )
    wait_for(lambda: image(api, kube_namespace) == "shop/web:1", message="web 1 synced")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    decision = stack.alert(workload)
    assert decision.rollout.owner.kind == "argocd"
    rollback = stack.roll_back(decision)
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert [s.name for s in rollback.steps][:5] == [
        "lock",
        "preflight",
        "evidence",
        "owner",
        "revert",
    ]
    assert "auto-sync disabled" in rollback.step("owner").detail
    assert "Argo CD synced" in rollback.step("revert").detail
    app = api.get(argocd.API, "Application", kube_namespace, "web")
    assert app["spec"]["syncPolicy"]["automated"]["enabled"] is False
    last = app["status"]["history"][-1]
    assert last["initiatedBy"] == {"username": "backstop"}
    assert last["revision"] == app["status"]["history"][0]["revision"]  # web 1's commit
    (freeze,) = stack.store.freezes.active()
    assert (freeze.kind, freeze.name, freeze.rollback_id) == ("Application", "web", rollback.id)
    assert freeze.source == app["status"]["sync"]["revision"]  # Git's head: the bad commit
    holds(argo, api, kube_namespace, "shop/web:1")


def test_flux_kustomization(make_stack, api, gitops, git_repo, kube_namespace):
    stack = make_stack(FAST)
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    create(api, kube_namespace, flux.git_repository("repo", git_repo.url))
    controller = gitops(flux.KustomizeController)
    create(api, kube_namespace, flux.kustomization("apps", "repo", "apps/web", interval="1s"))
    wait_for(lambda: image(api, kube_namespace) == "shop/web:1", message="web 1 applied")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    assert_blocked_and_untouched(stack, api, kube_namespace, workload, "kustomization")
    assert not controller.errors


def appset_child(api, gitops, git_repo, namespace):
    """web 1 then web 2 deployed by the Application `web` that the ApplicationSet `apps`
    generates with automated sync and self-heal; both controllers running."""
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    argo, sets = gitops(argocd.ArgoCD, self_heal_timeout=2.0), gitops(ApplicationSets)
    child = argocd.application("{{name}}", git_repo.url, path="apps/{{name}}", namespace=namespace)
    template = {"metadata": child["metadata"], "spec": child["spec"]}
    create(api, namespace, application_set("apps", [{"name": "web"}], template))
    wait_for(lambda: image(api, namespace) == "shop/web:1", message="web 1 synced")
    return argo, sets


def test_applicationset_child(make_stack, api, gitops, git_repo, kube_namespace):
    stack = argo_stack(make_stack, kube_namespace)
    argo, sets = appset_child(api, gitops, git_repo, kube_namespace)
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    frozen = {f.kind: f for f in stack.store.freezes.active()}
    assert set(frozen) == {"ApplicationSet", "Application"}
    assert frozen["ApplicationSet"].how == "child's syncPolicy ignored"
    appset = api.get(argocd.API, "ApplicationSet", kube_namespace, "apps")
    assert {"name": "web", "jsonPointers": ["/spec/syncPolicy"]} in appset["spec"][
        "ignoreApplicationDifferences"
    ]
    holds(argo, api, kube_namespace, "shop/web:1")
    app = api.get(argocd.API, "Application", kube_namespace, "web")
    assert app["spec"]["syncPolicy"]["automated"]["enabled"] is False  # sets did not undo it
    assert not sets.errors


def test_unfreezable_owner_blocks(make_stack, api, gitops, git_repo, kube_namespace):
    """Told not to freeze parents, Backstop cannot stop the ApplicationSet re-enabling the
    child's auto-sync: blocked and paged, nothing frozen, the workload untouched."""
    stack = make_stack(
        {**FAST, "owners": {"argocd": {"namespace": kube_namespace, "freeze_parents": False}}}
    )
    appset_child(api, gitops, git_repo, kube_namespace)
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert "freeze_parents is off" in rollback.step("owner").detail
    assert rollback.incident_job_id  # filed and paged like every blocked rollback
    assert stack.store.freezes.active() == []
    app = api.get(argocd.API, "Application", kube_namespace, "web")
    assert app["spec"]["syncPolicy"]["automated"].get("enabled") is not False
    assert image(api, kube_namespace) == "shop/web:2" and stack.revision("web") == "2"


def test_owner_kind_switched_off_blocks(make_stack, api, gitops, git_repo, kube_namespace):
    stack = make_stack(
        {**FAST, "owners": {"argocd": {"namespace": kube_namespace, "enabled": False}}}
    )
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    gitops(argocd.ArgoCD, self_heal_timeout=2.0)
    create(
        api,
        kube_namespace,
        argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace),
    )
    wait_for(lambda: image(api, kube_namespace) == "shop/web:1", message="web 1 synced")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    assert_blocked_and_untouched(stack, api, kube_namespace, workload, "argocd")
    rollback = stack.store.rollbacks.recent(limit=1)[0]
    assert "owners.argocd.enabled is off" in rollback.preflight["owner"]["detail"]


def test_the_freeze_ends_once_git_moves_past_the_bad_commit(
    make_stack, api, gitops, git_repo, kube_namespace
):
    """The freeze review with the real Argo CD hand: nothing ends while Git's head is still
    the bad commit; a new commit ends the freeze (moved_past), auto-sync comes back as it
    was, and Argo CD deploys the new commit."""
    stack = argo_stack(make_stack, kube_namespace)
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    argo = gitops(argocd.ArgoCD, self_heal_timeout=2.0)
    create(
        api,
        kube_namespace,
        argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace),
    )
    wait_for(lambda: image(api, kube_namespace) == "shop/web:1", message="web 1 synced")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    workload = released(stack, api, kube_namespace)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    situation = Situation(
        stack.kube, Objects(stack.api), stack.store, stack.policy.owners, utcnow, time.sleep
    )

    def hand_for(freeze):
        return registry.thawing_hand(freeze, situation)

    argo.wait_passes(3)
    assert freezes.review_freezes(stack.store, hand_for, clock=utcnow)["kept"] == 1
    git_repo.set_image(WEB, "web", "shop/web:3")
    wait_for(
        lambda: freezes.review_freezes(stack.store, hand_for, clock=utcnow)["moved_past"] == 1,
        message="the review seeing Git's new head",
    )
    assert stack.store.freezes.active() == []
    (ended,) = stack.store.freezes.recent(limit=1)
    assert ended.end == "moved_past" and "Git moved from" in ended.end_reason
    app = api.get(argocd.API, "Application", kube_namespace, "web")
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}
    assert "backstop.io/frozen-automated" not in app["metadata"].get("annotations", {})
    wait_for(lambda: image(api, kube_namespace) == "shop/web:3", message="web 3 synced")
    assert not argo.errors
