"""The GitOps stand-ins (testbed/gitops) behave as their originals on the real control plane.

Argo CD self-heals drift while auto-sync is on and leaves it once auto-sync is frozen;
an `operation` syncs to an older history revision and appends history; an ApplicationSet
turns a frozen child's auto-sync back on unless told to ignore it. Flux re-applies Git
unless the Kustomization is suspended or the object opts out; helm-controller upgrades on
a new chart or values, not on drift, never while suspended, and again after a release it
did not make; image automation commits the policy's image unless suspended. Helm's
release Secrets round-trip in Helm's encoding and read back as `helm history` prints them.
"""

from __future__ import annotations

import base64
import gzip
import json
import time

import pytest
import yaml
from kubernetes import client

from testbed.gitops import argocd, flux, helm
from testbed.gitops.appset import ApplicationSets, application_set
from testbed.gitops.imageautomation import ImageAutomation, image_update_automation
from tests.conftest import wait_for
from tests.gitops_fixtures import (
    TEMPLATE,
    WEB,
    chart_setup,
    create,
    image,
    manifest,
    patch,
    read,
    set_live_image,
)

pytestmark = pytest.mark.integration


def test_crds_keep_the_upstream_fields(api, kube_namespace):
    """Objects shaped as upstream writes them keep their fields (nothing pruned)."""
    app = argocd.application("web", "file:///repo", namespace=kube_namespace)
    app["operation"] = {
        "sync": {"revision": "abc", "source": app["spec"]["source"]},
        "initiatedBy": {"username": "backstop"},
        "info": [{"name": "reason", "value": "rollback"}],
    }
    app["status"] = {
        "sync": {"status": "Synced", "revision": "abc"},
        "history": [{"id": 0, "revision": "abc", "deployedAt": "2024-01-01T00:00:00Z"}],
    }
    created = create(api, kube_namespace, app)
    assert created["operation"] == app["operation"]
    assert created["status"] == app["status"]  # no status subresource: written with the object
    automation = create(api, kube_namespace, image_update_automation("web", "repo", "apps"))
    as_v1 = api.get("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation", kube_namespace, "web")
    assert as_v1["spec"] == automation["spec"]
    release = create(
        api,
        kube_namespace,
        flux.helm_release("web", "repo", "charts/web", values={"a": {"b": [1]}}),
    )
    assert release["spec"]["values"] == {"a": {"b": [1]}}
    assert release["spec"]["chart"]["spec"]["version"] == "*"  # upstream's default


def test_argocd_self_heal_puts_the_git_image_back(api, gitops, git_repo, kube_namespace):
    git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    bad = git_repo.set_image(WEB, "web", "shop/web:2")
    argo = gitops(argocd.ArgoCD, self_heal_timeout=2.0)
    app = create(
        api,
        kube_namespace,
        argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace),
    )

    def synced():
        status = (read(api, kube_namespace, app) or {}).get("status", {})
        return (
            status.get("sync", {}).get("status") == "Synced"
            and status["health"]["status"] == "Healthy"
        )

    wait_for(synced, message="Application synced and healthy")
    live = api.get("apps/v1", "Deployment", kube_namespace, "web")
    tracking = live["metadata"]["annotations"][argocd.TRACKING]
    assert tracking == f"web:apps/Deployment:{kube_namespace}/web"
    status = read(api, kube_namespace, app)["status"]
    assert [h["revision"] for h in status["history"]] == [bad]
    assert status["resources"][0]["kind"] == "Deployment"

    set_live_image(api, kube_namespace, "shop/web:1")  # the revert Argo CD does not know of
    wait_for(lambda: image(api, kube_namespace) == "shop/web:2", timeout=15, message="self-heal")
    state = read(api, kube_namespace, app)["status"]["operationState"]
    assert state["operation"]["initiatedBy"] == {"automated": True}
    assert state["operation"]["sync"]["autoHealAttemptsCount"] == 1
    assert len(read(api, kube_namespace, app)["status"]["history"]) == 1  # partial syncs add none
    assert not argo.errors


@pytest.mark.parametrize("freeze", [{"automated": None}, {"automated": {"enabled": False}}])
def test_argocd_leaves_drift_once_auto_sync_is_off(api, gitops, git_repo, kube_namespace, freeze):
    git_repo.commit({WEB: manifest("web", "shop/web:2")}, "web 2")
    argo = gitops(argocd.ArgoCD, self_heal_timeout=1.0)
    app = create(
        api,
        kube_namespace,
        argocd.application("web", git_repo.url, path="apps/web", namespace=kube_namespace),
    )
    wait_for(lambda: image(api, kube_namespace) == "shop/web:2", message="first sync")
    patch(api, kube_namespace, app, {"spec": {"syncPolicy": freeze}})
    argo.wait_passes(1)  # a pass that read the Application before the freeze is over
    set_live_image(api, kube_namespace, "shop/web:1")

    def out_of_sync():
        return read(api, kube_namespace, app)["status"]["sync"]["status"] == "OutOfSync"

    wait_for(out_of_sync, message="drift seen")
    time.sleep(1.0 + 0.5)  # past the self-heal timeout
    argo.wait_passes(3)
    assert image(api, kube_namespace) == "shop/web:1"
    assert out_of_sync()
    assert not argo.errors


def test_argocd_operation_syncs_an_older_history_revision(api, gitops, git_repo, kube_namespace):
    good = git_repo.commit({WEB: manifest("web", "shop/web:1")}, "web 1")
    argo = gitops(argocd.ArgoCD)
    body = argocd.application(
        "web", git_repo.url, path="apps/web", namespace=kube_namespace, self_heal=False
    )
    app = create(api, kube_namespace, body)

    def history():
        return [
            h["revision"]
            for h in (read(api, kube_namespace, app).get("status") or {}).get("history", [])
        ]

    wait_for(lambda: history() == [good], message="first sync")
    bad = git_repo.set_image(WEB, "web", "shop/web:2")
    wait_for(lambda: history() == [good, bad], message="auto-sync of the new revision")
    assert image(api, kube_namespace) == "shop/web:2"

    patch(api, kube_namespace, app, {"spec": {"syncPolicy": {"automated": None}}})
    entry = read(api, kube_namespace, app)["status"]["history"][0]
    operation = {
        "sync": {"revision": entry["revision"], "source": entry["source"]},
        "initiatedBy": {"username": "backstop"},
        "info": [{"name": "Reason", "value": "rollback r-1"}],
    }
    patch(api, kube_namespace, app, {"operation": operation})
    wait_for(lambda: not read(api, kube_namespace, app).get("operation"), message="operation done")
    status = read(api, kube_namespace, app)["status"]
    assert status["operationState"]["phase"] == "Succeeded"
    assert status["operationState"]["operation"] == operation
    assert status["operationState"]["syncResult"]["revision"] == good
    assert [h["id"] for h in status["history"]] == [0, 1, 2]
    assert status["history"][-1]["revision"] == good
    assert status["history"][-1]["initiatedBy"] == {"username": "backstop"}
    assert image(api, kube_namespace) == "shop/web:1"
    wait_for(lambda: read(api, kube_namespace, app)["status"]["sync"]["status"] == "OutOfSync")
    assert read(api, kube_namespace, app)["status"]["sync"]["revision"] == bad  # Git still says 2
    assert not argo.errors


def test_applicationset_restores_a_frozen_child_unless_told(api, gitops, git_repo, kube_namespace):
    git_repo.commit({WEB: manifest("web", "shop/web:2")}, "web 2")
    argo, sets = gitops(argocd.ArgoCD), gitops(ApplicationSets)
    child = argocd.application(
        "{{name}}", git_repo.url, path="apps/{{name}}", namespace=kube_namespace
    )
    template = {"metadata": child["metadata"], "spec": child["spec"]}
    appset = create(api, kube_namespace, application_set("apps", [{"name": "web"}], template))
    wait_for(lambda: image(api, kube_namespace) == "shop/web:2", message="child synced")
    child["metadata"] = {"name": "web"}
    owner = read(api, kube_namespace, child)["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "ApplicationSet",
        appset["metadata"]["uid"],
        True,
    )

    def automated():
        return (read(api, kube_namespace, child)["spec"].get("syncPolicy") or {}).get("automated")

    patch(api, kube_namespace, child, {"spec": {"syncPolicy": {"automated": None}}})
    wait_for(automated, timeout=10, message="the ApplicationSet turning auto-sync back on")
    ignore = [{"jsonPointers": ["/spec/syncPolicy"]}]
    patch(api, kube_namespace, appset, {"spec": {"ignoreApplicationDifferences": ignore}})
    sets.wait_passes(2)
    patch(api, kube_namespace, child, {"spec": {"syncPolicy": {"automated": None}}})
    sets.wait_passes(3)
    assert not automated()
    assert not sets.errors and not argo.errors


def flux_setup(api, gitops, git_repo, namespace, interval="1s"):
    sha = git_repo.commit({WEB: manifest("web", "shop/web:2")}, "web 2")
    create(api, namespace, flux.git_repository("repo", git_repo.url))
    controller = gitops(flux.KustomizeController)
    ks = create(api, namespace, flux.kustomization("apps", "repo", "apps/web", interval=interval))
    wait_for(lambda: image(api, namespace) == "shop/web:2", message="first apply")
    return controller, ks, sha


def test_kustomization_reapplies_git_over_drift(api, gitops, git_repo, kube_namespace):
    controller, ks, sha = flux_setup(api, gitops, git_repo, kube_namespace)
    labels = api.get("apps/v1", "Deployment", kube_namespace, "web")["metadata"]["labels"]
    assert labels["kustomize.toolkit.fluxcd.io/name"] == "apps"
    assert labels["kustomize.toolkit.fluxcd.io/namespace"] == kube_namespace
    wait_for(lambda: (read(api, kube_namespace, ks).get("status") or {}).get("inventory"))
    status = read(api, kube_namespace, ks)["status"]
    assert status["lastAppliedRevision"] == f"main@sha1:{sha}"
    assert status["inventory"]["entries"] == [
        {"id": f"{kube_namespace}_web_apps_Deployment", "v": "v1"}
    ]
    set_live_image(api, kube_namespace, "shop/web:1")
    wait_for(lambda: image(api, kube_namespace) == "shop/web:2", timeout=10, message="re-applied")
    assert not controller.errors


@pytest.mark.parametrize("how", ["suspend", "reconcile-disabled"])
def test_kustomization_leaves_drift_when_told(api, gitops, git_repo, kube_namespace, how):
    controller, ks, _ = flux_setup(api, gitops, git_repo, kube_namespace)
    if how == "suspend":
        patch(api, kube_namespace, ks, {"spec": {"suspend": True}})
    else:
        annotation = {"metadata": {"annotations": {flux.RECONCILE: "disabled"}}}
        client.AppsV1Api(api.api).patch_namespaced_deployment("web", kube_namespace, annotation)
    controller.wait_passes(1)  # a pass that read the old state is over
    set_live_image(api, kube_namespace, "shop/web:1")
    time.sleep(1.5)  # past the interval
    controller.wait_passes(3)
    assert image(api, kube_namespace) == "shop/web:1"
    assert not controller.errors


def statuses(api, namespace) -> list[tuple[int, str, str]]:
    return [
        (r["revision"], r["status"], r["description"]) for r in helm.history(api, namespace, "web")
    ]


def test_helmrelease_honours_suspend_and_leaves_drift(api, gitops, git_repo, kube_namespace):
    controller, hr = chart_setup(api, gitops, git_repo, kube_namespace, {"image": "shop/web:2"})
    wait_for(lambda: image(api, kube_namespace) == "shop/web:2")
    labels = api.get("apps/v1", "Deployment", kube_namespace, "web")["metadata"]["labels"]
    assert labels["helm.toolkit.fluxcd.io/name"] == "web"
    assert labels[helm.MANAGED_BY] == "Helm"
    set_live_image(api, kube_namespace, "shop/web:1")  # drift detection is off by default
    patch(api, kube_namespace, hr, {"spec": {"suspend": True, "values": {"image": "shop/web:3"}}})
    time.sleep(1.5)
    controller.wait_passes(3)
    assert image(api, kube_namespace) == "shop/web:1"
    assert statuses(api, kube_namespace) == [(1, "deployed", "Install complete")]
    patch(api, kube_namespace, hr, {"spec": {"suspend": False}})
    wait_for(lambda: len(statuses(api, kube_namespace)) == 2, message="upgrade once resumed")
    assert image(api, kube_namespace) == "shop/web:3"
    assert statuses(api, kube_namespace)[0][1] == "superseded"
    # The controller writes the release Secret first and the HelmRelease status after it.
    hr_status = wait_for(
        lambda: recorded(read(api, kube_namespace, hr).get("status") or {}, 2),
        message="status.history to record release 2",
    )
    assert hr_status["lastAttemptedReleaseAction"] == "upgrade"
    assert not controller.errors


def recorded(status: dict, version: int) -> dict | None:
    """`status` once its newest history entry is release `version`, else None."""
    history = status.get("history") or []
    return status if history and history[0]["version"] == version else None


def test_helmrelease_upgrades_over_a_rollback_it_did_not_make(
    api, gitops, git_repo, kube_namespace
):
    controller, hr = chart_setup(api, gitops, git_repo, kube_namespace, {"image": "shop/web:1"})
    patch(api, kube_namespace, hr, {"spec": {"values": {"image": "shop/web:2"}}})
    wait_for(lambda: len(statuses(api, kube_namespace)) == 2, message="upgrade")
    patch(api, kube_namespace, hr, {"spec": {"suspend": True}})
    controller.wait_passes(1)
    helm.rollback(api, kube_namespace, "web")  # a `helm rollback` outside helm-controller
    assert image(api, kube_namespace) == "shop/web:1"
    patch(api, kube_namespace, hr, {"spec": {"suspend": False}})
    wait_for(lambda: len(statuses(api, kube_namespace)) == 4, message="not observed: upgraded")
    assert statuses(api, kube_namespace)[2:] == [
        (3, "superseded", "Rollback to 1"),
        (4, "deployed", "Upgrade complete"),
    ]
    assert image(api, kube_namespace) == "shop/web:2"
    assert not controller.errors


def test_helm_release_secrets_round_trip_and_history(api, git_repo, kube_namespace):
    git_repo.commit(
        {
            "chart/Chart.yaml": {
                "apiVersion": "v2",
                "name": "web",
                "version": "1.2.3",
                "appVersion": "2",
            },
            "chart/values.yaml": {"image": "shop/web:1"},
            "chart/templates/deployment.yaml": TEMPLATE,
        },
        "chart",
    )
    chart = helm.Chart.from_git(git_repo, "HEAD", "chart")
    helm.install(api, kube_namespace, "web", chart)
    helm.upgrade(api, kube_namespace, "web", chart, {"image": "shop/web:2"})
    secret = client.CoreV1Api(api.api).read_namespaced_secret(
        "sh.helm.release.v1.web.v2", kube_namespace
    )
    assert secret.type == "helm.sh/release.v1"
    labels = {k: v for k, v in secret.metadata.labels.items() if k != "createdAt"}
    assert labels == {"name": "web", "owner": "helm", "status": "deployed", "version": "2"}
    stored = base64.b64decode(secret.data["release"])  # the Secret's own base64 ...
    raw = base64.b64decode(stored)  # ... around Helm's base64 of gzip
    assert raw[:3] == b"\x1f\x8b\x08"
    release = json.loads(gzip.decompress(raw))
    assert release["chart"]["metadata"] == {
        "apiVersion": "v2",
        "name": "web",
        "version": "1.2.3",
        "appVersion": "2",
    }
    assert release["config"] == {"image": "shop/web:2"}
    assert release["info"]["status"] == "deployed"
    assert "# Source: web/templates/deployment.yaml" in release["manifest"]
    assert helm.decode(helm.encode(release)) == release
    assert helm.decode(base64.b64encode(json.dumps(release).encode()).decode()) == release
    live = api.get("apps/v1", "Deployment", kube_namespace, "web")
    assert live["metadata"]["annotations"][helm.RELEASE_NAME] == "web"
    assert live["metadata"]["annotations"][helm.RELEASE_NAMESPACE] == kube_namespace
    assert live["metadata"]["labels"][helm.MANAGED_BY] == "Helm"
    rows = helm.history(api, kube_namespace, "web")
    assert [
        (r["revision"], r["status"], r["chart"], r["app_version"], r["description"]) for r in rows
    ] == [
        (1, "superseded", "web-1.2.3", "2", "Install complete"),
        (2, "deployed", "web-1.2.3", "2", "Upgrade complete"),
    ]
    with pytest.raises(helm.HelmError, match="still in use"):
        helm.install(api, kube_namespace, "web", chart)


def test_image_automation_commits_the_policy_image(api, gitops, git_repo, kube_namespace):
    setter = f'# {{"$imagepolicy": "{kube_namespace}:web"}}'
    text = yaml.safe_dump(manifest("web", "shop/web:1"), sort_keys=False)
    git_repo.commit({WEB: text.replace("image: shop/web:1", f"image: shop/web:1 {setter}")}, "1")
    create(api, kube_namespace, flux.git_repository("repo", git_repo.url))
    automation = gitops(ImageAutomation)
    automation.policies[f"{kube_namespace}:web"] = "shop/web:2"
    body = create(api, kube_namespace, image_update_automation("web", "repo", "apps", "1s"))
    wait_for(lambda: "shop/web:2" in git_repo.show("HEAD", WEB), message="setter commit")
    assert setter in git_repo.show("HEAD", WEB)  # the marker survives the rewrite
    wait_for(lambda: (read(api, kube_namespace, body).get("status") or {}).get("lastPushCommit"))
    assert read(api, kube_namespace, body)["status"]["lastPushCommit"] == git_repo.head()
    patch(api, kube_namespace, body, {"spec": {"suspend": True}})
    automation.wait_passes(1)
    head = git_repo.head()
    automation.policies[f"{kube_namespace}:web"] = "shop/web:3"
    time.sleep(1.5)
    automation.wait_passes(3)
    assert git_repo.head() == head
    assert not automation.errors
