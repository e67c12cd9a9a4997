"""Pytest fixtures for workloads owned by Argo CD, Flux or Helm (testbed/gitops).

`gitops_crds` installs the owners' CRDs once per session (kept, like the Rollout CRD:
later modules and reruns on a real cluster use them); `git_repo` is a fresh local Git
repository; `gitops` starts stand-in controllers on the test namespace and stops every
one it started, whatever the test did.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from testbed.gitops import crds, flux, helm
from testbed.gitops.cluster import Cluster, Controller
from testbed.gitops.git import GitRepo
from tests.conftest import wait_for
from tests.workloads import deployment


@pytest.fixture(scope="session")
def gitops_crds(kube):
    """The GitOps owners' CRDs, installed and served."""
    names = crds.names()
    with kube.crds(crds.CRDS, keep=names), Cluster(kube.api_client()) as cluster:
        wait_for(
            lambda: all(crds.served(cluster, *kind) for kind in crds.SERVED),
            message="GitOps APIs",
        )
        yield names


@pytest.fixture
def api(kube, gitops_crds):
    """The test cluster, as the stand-ins see it (owner objects as plain JSON dicts)."""
    with Cluster(kube.api_client()) as cluster:
        yield cluster


@pytest.fixture
def git_repo(tmp_path) -> GitRepo:
    """An empty local Git repository (branch main) for the stand-ins to read."""
    return GitRepo.init(tmp_path / "git")


@pytest.fixture
def gitops(kube, kube_namespace, gitops_crds):
    """`gitops(ControllerClass, **options)` starts a stand-in on the test namespace; all
    are stopped (threads joined) after the test, before the namespace goes."""
    started: list[Controller] = []

    def start(kind: type[Controller], **options) -> Controller:
        controller = kind(kube.kubeconfig, namespace=kube_namespace, **options)
        started.append(controller)
        return controller.start()

    try:
        yield start
    finally:
        for controller in started:
            controller.stop()


def manifest(name: str, image: str, replicas: int = 1) -> dict:
    """A Deployment as it would sit in Git (apiVersion and kind included)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", **deployment(name, image, replicas)}


WEB = "apps/web/deployment.yaml"
# A template in the small subset the Helm stand-in renders (.Values, .Release, .Chart).
TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: "{{ .Release.Name }}"}
  template:
    metadata:
      labels: {app: "{{ .Release.Name }}"}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image }}"
"""


def image(api: Cluster, namespace: str, name: str = "web") -> str | None:
    """The live image of Deployment name's first container (None when absent)."""
    live = api.get("apps/v1", "Deployment", namespace, name)
    return live["spec"]["template"]["spec"]["containers"][0]["image"] if live else None


def set_live_image(api: Cluster, namespace: str, value: str, name: str = "web") -> None:
    """What Backstop's revert does: patch the pod template as field manager backstop."""
    client.AppsV1Api(api.api).patch_namespaced_deployment(
        name,
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": value}]}}}},
        field_manager="backstop",
    )


def create(api: Cluster, namespace: str, body: dict) -> dict:
    """Create body in namespace."""
    body["metadata"]["namespace"] = namespace
    return api.create(body)


def read(api: Cluster, namespace: str, body: dict) -> dict:
    """The live copy of body in namespace."""
    return api.get(body["apiVersion"], body["kind"], namespace, body["metadata"]["name"])


def patch(api: Cluster, namespace: str, body: dict, change: dict) -> None:
    """Merge-patch body's live copy in namespace with change."""
    api.merge_patch({**body, "metadata": {**body["metadata"], "namespace": namespace}}, change)


def chart_setup(api: Cluster, gitops, git_repo: GitRepo, namespace: str, values: dict, **spec):
    """The chart `charts/web` committed to `git_repo`, its GitRepository `repo`, a running
    helm-controller and the HelmRelease `web` (extra spec fields) installed from it; the
    controller and the HelmRelease's body."""
    git_repo.commit(
        {
            "charts/web/Chart.yaml": {"apiVersion": "v2", "name": "web", "version": "1.0.0"},
            "charts/web/values.yaml": {"image": "shop/web:1"},
            "charts/web/templates/deployment.yaml": TEMPLATE,
        },
        "chart",
    )
    create(api, namespace, flux.git_repository("repo", git_repo.url))
    controller = gitops(flux.HelmController)
    body = flux.helm_release("web", "repo", "charts/web", "1s", values=values, **spec)
    hr = create(api, namespace, body)
    wait_for(lambda: helm.history(api, namespace, "web"), message="install")
    return controller, hr
