"""Rollbacks of workloads an owner reconciles, with the owners' stand-ins running
(testbed/gitops): Backstop finds the owner from the marks the owner itself left, and does
not revert behind its back — the revert would be undone within seconds while Backstop
reported it verified. Until rollbacks go through the owner, such a rollback is
`blocked: owner_not_frozen` (filed and paged) and the owner's state is left as it was.
"""

import pytest

from core.models import Workload
from testbed.gitops import argocd, flux
from testbed.gitops.cluster import Cluster
from tests.conftest import wait_for
from tests.gitops_fixtures import WEB, create, image, manifest
from tests.workloads import FAST

pytestmark = pytest.mark.integration


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


def test_argo_cd_with_self_heal(make_stack, api, gitops, git_repo, kube_namespace):
    stack = make_stack(FAST)
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
    assert_blocked_and_untouched(stack, api, kube_namespace, workload, "argocd")
    assert not argo.errors


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
