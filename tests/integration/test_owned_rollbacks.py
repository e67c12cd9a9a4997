"""Rollbacks of workloads Argo CD reconciles, with the owners' stand-ins running
(testbed/gitops): Backstop finds the owner from the marks the owner itself left and rolls
back through it, frozen first — a revert behind its back would be undone within seconds
while Backstop reported it verified. An owner that cannot be frozen blocks the rollback
(`blocked: owner_not_frozen`, filed and paged) and is left as it was. Flux and Helm:
test_flux_rollbacks.py and test_helm_rollbacks.py.
"""

import pytest

from testbed.gitops import argocd
from testbed.gitops.appset import ApplicationSets, application_set
from tests.conftest import wait_for
from tests.gitops_fixtures import WEB, create, image, manifest
from tests.owned import assert_blocked_and_untouched, holds, released, review
from tests.workloads import FAST

pytestmark = pytest.mark.integration


def argo_stack(make_stack, namespace):
    """A stack whose Argo CD lives in the test namespace (the stand-in's Applications)."""
    return make_stack({**FAST, "owners": {"argocd": {"namespace": namespace}}})


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
    rollback = assert_blocked_and_untouched(stack, api, kube_namespace, workload, "argocd")
    assert [s.name for s in rollback.steps] == ["lock", "preflight"]
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
    argo.wait_passes(3)
    assert review(stack)["kept"] == 1
    git_repo.set_image(WEB, "web", "shop/web:3")
    wait_for(
        lambda: review(stack)["moved_past"] == 1,
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


def test_app_of_apps_child(make_stack, api, gitops, git_repo, kube_namespace):
    """The Application `web` is itself synced from Git by the parent `root` (app of apps,
    both self-healing): the parent is frozen first, then the child, and the good version
    holds."""
    stack = argo_stack(make_stack, kube_namespace)
    child = argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace)
    child["metadata"]["namespace"] = kube_namespace
    git_repo.commit(
        {WEB: manifest("web", "shop/web:1"), "apps/root/web.yaml": child}, "web 1, app of apps"
    )
    argo = gitops(argocd.ArgoCD, self_heal_timeout=2.0)
    root = argocd.application("root", git_repo.url, path="apps/root", namespace=kube_namespace)
    create(api, kube_namespace, root)
    wait_for(lambda: image(api, kube_namespace) == "shop/web:1", message="web 1 synced")
    wait_for(lambda: stack.revision("web") == "1", message="revision 1")
    git_repo.set_image(WEB, "web", "shop/web:2")
    rollback = stack.roll_back(stack.alert(released(stack, api, kube_namespace)))
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert sorted(f.name for f in stack.store.freezes.active()) == ["root", "web"]
    detail = rollback.step("owner").detail
    froze = [f"Application {kube_namespace}/{name}" for name in ("root", "web")]
    assert detail.index(froze[0]) < detail.index(froze[1])  # the parent first
    holds(argo, api, kube_namespace, "shop/web:1")
    for name in ("root", "web"):
        app = api.get(argocd.API, "Application", kube_namespace, name)
        assert app["spec"]["syncPolicy"]["automated"]["enabled"] is False, name
