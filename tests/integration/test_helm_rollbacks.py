"""Rollbacks of workloads the Helm CLI installed, with the Helm stand-in (testbed/gitops/
helm.py) writing release Secrets in Helm's own encoding on the real control plane:
Backstop confirms the release from its Secret, reverts the workload, and records the
rollback in Helm's history as `helm rollback` would, so the next `helm upgrade` starts from
the truth. With `owners.helm.record_release: false` the rollback is blocked and paged.
"""

import pytest
from kubernetes import client

from testbed.gitops import helm
from tests.conftest import wait_for
from tests.gitops_fixtures import TEMPLATE, image
from tests.owned import released
from tests.workloads import FAST

pytestmark = pytest.mark.integration


def installed(make_stack, api, git_repo, namespace, owners=None):
    """A stack; the chart `charts/web` (image shop/web:1 by default) committed to Git,
    installed as release `web` (revision 1), then upgraded to shop/web:2 (revision 2,
    the bad one). The stack, the chart and the workload."""
    stack = make_stack({**FAST, "owners": owners or {}})
    git_repo.commit(
        {
            "charts/web/Chart.yaml": {"apiVersion": "v2", "name": "web", "version": "1.0.0"},
            "charts/web/values.yaml": {"image": "shop/web:1"},
            "charts/web/templates/deployment.yaml": TEMPLATE,
        },
        "chart",
    )
    chart = helm.Chart.from_git(git_repo, "HEAD", "charts/web")
    helm.install(api, namespace, "web", chart)
    wait_for(lambda: image(api, namespace) == "shop/web:1", message="web 1 installed")
    wait_for(lambda: revision(api, namespace) == "1", message="revision 1")
    helm.upgrade(api, namespace, "web", chart, {"image": "shop/web:2"})
    return stack, chart, released(stack, api, namespace)


def revision(api, namespace) -> str | None:
    """The Deployment's revision (None until its controller has numbered it)."""
    meta = api.get("apps/v1", "Deployment", namespace, "web")["metadata"]
    return (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")


def rows(api, namespace) -> list[tuple]:
    """`helm history web`, as (revision, status, description)."""
    return [
        (r["revision"], r["status"], r["description"]) for r in helm.history(api, namespace, "web")
    ]


def test_the_rollback_is_recorded_in_helms_history(make_stack, api, git_repo, kube_namespace):
    stack, chart, workload = installed(make_stack, api, git_repo, kube_namespace)
    decision = stack.alert(workload)
    assert decision.rollout.owner.kind == "helm"
    rollback = stack.roll_back(decision)
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert rollback.owner.kind == "helm" and rollback.owner.confirmed  # by its Secret
    names = [s.name for s in rollback.steps]
    # A 409 on the revert (the workload moved meanwhile) re-runs pre-flight in between.
    assert names.index("owner") < names.index("revert")
    assert "froze nothing" in rollback.step("owner").detail
    detail = rollback.step("revert").detail
    assert detail == (
        "Deployment reverted to revision 1; Helm release "
        f"{kube_namespace}/web: revision 3 records the rollback to revision 1 (2 superseded)"
    )
    assert image(api, kube_namespace) == "shop/web:1"
    assert rows(api, kube_namespace) == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]
    (one, _, three) = helm.releases(api, kube_namespace, "web")
    assert three["config"] == one["config"] and three["manifest"] == one["manifest"]
    secret = client.CoreV1Api(api.api).read_namespaced_secret(
        "sh.helm.release.v1.web.v3", kube_namespace
    )
    assert secret.metadata.annotations == {"backstop.io/rollback": rollback.id}
    assert {e.manager for e in secret.metadata.managed_fields} == {"backstop"}
    assert stack.store.freezes.active() == []
    # The next `helm upgrade` builds on the record: revision 4, the rollback superseded.
    helm.upgrade(api, kube_namespace, "web", chart, {"image": "shop/web:3"})
    wait_for(lambda: image(api, kube_namespace) == "shop/web:3", message="web 3 upgraded")
    assert rows(api, kube_namespace)[2:] == [
        (3, "superseded", "Rollback to 1"),
        (4, "deployed", "Upgrade complete"),
    ]


def test_recording_switched_off_blocks(make_stack, api, git_repo, kube_namespace):
    """Without Helm's record, the next `helm upgrade --reuse-values` would bring the bad
    release back: blocked and paged, the workload and Helm's history untouched."""
    owners = {"helm": {"record_release": False}}
    stack, _, workload = installed(make_stack, api, git_repo, kube_namespace, owners)
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert rollback.owner.kind == "helm"
    assert "owners.helm.record_release is off" in rollback.step("owner").detail
    assert rollback.step("revert") is None
    assert rollback.incident_job_id  # filed and paged like every blocked rollback
    assert image(api, kube_namespace) == "shop/web:2" and stack.revision("web") == "2"
    assert rows(api, kube_namespace) == [
        (1, "superseded", "Install complete"),
        (2, "deployed", "Upgrade complete"),
    ]


def test_an_uninstalled_release_leaves_the_workload_to_backstop_alone(
    make_stack, api, git_repo, kube_namespace
):
    """After `helm uninstall` (its Secrets deleted) the release annotations remain on a
    workload someone kept: not confirmed, so it is reverted as any other workload and no
    Helm history is written."""
    stack, _, workload = installed(make_stack, api, git_repo, kube_namespace)
    core = client.CoreV1Api(api.api)
    for version in (1, 2):
        core.delete_namespaced_secret(f"sh.helm.release.v1.web.v{version}", kube_namespace)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", (rollback.reason, rollback.steps[-1].detail)
    assert rollback.owner is None
    assert "unconfirmed: helm" in rollback.preflight["owner"]["detail"]
    assert rollback.step("revert").detail == "Deployment reverted to revision 1"
    assert helm.history(api, kube_namespace, "web") == []


def test_helm_switched_off_blocks_without_reading_the_secrets(
    make_stack, api, git_repo, kube_namespace
):
    """With `owners.helm.enabled: false` Backstop may lack the rights to read release
    Secrets, so it does not; the annotations most often mean a live release, whose next
    upgrade would undo a revert: blocked and paged."""
    owners = {"helm": {"enabled": False}}
    stack, _, workload = installed(make_stack, api, git_repo, kube_namespace, owners)
    rollback = stack.roll_back(stack.alert(workload))
    assert (rollback.status, rollback.reason) == ("blocked", "owner_not_frozen")
    assert "owners.helm.enabled is off" in rollback.preflight["owner"]["detail"]
    assert image(api, kube_namespace) == "shop/web:2"
