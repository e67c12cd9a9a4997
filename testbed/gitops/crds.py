"""The GitOps owners' CRDs (tests/manifests/gitops-crds.yaml), installed where a cluster
lacks them, for the tests and the game day that run the stand-ins.

A cluster that already has one (the real Argo CD's or Flux's, or an earlier run's) keeps
it: it is used as it is and never deleted here. `install` returns the names it created, and
returns once every stand-in's kind is served (the apiserver may drop connections while it
starts serving a new group).
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from kubernetes import client

from testbed.gitops.cluster import Cluster

CRDS = Path(__file__).resolve().parents[2] / "tests" / "manifests" / "gitops-crds.yaml"
SERVED = (
    ("argoproj.io/v1alpha1", "Application"),
    ("argoproj.io/v1alpha1", "ApplicationSet"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    ("image.toolkit.fluxcd.io/v1beta2", "ImageUpdateAutomation"),
    ("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation"),
)


def names() -> tuple[str, ...]:
    """The names of the CRDs in the file."""
    return tuple(crd["metadata"]["name"] for crd in yaml.safe_load_all(CRDS.read_text()))


def install(api: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Create the CRDs the cluster lacks, wait until they are established and every
    stand-in's kind is served; the names created."""
    extensions = client.ApiextensionsV1Api(api)
    created = []
    for crd in yaml.safe_load_all(CRDS.read_text()):
        try:
            extensions.create_custom_resource_definition(crd)
        except client.ApiException as error:
            if error.status != 409:
                raise
            continue
        created.append(crd["metadata"]["name"])
    deadline = time.monotonic() + timeout
    cluster = Cluster(api)  # shares api: the caller closes it
    while not all(_established(extensions, n) for n in created) or not all(
        served(cluster, *kind) for kind in SERVED
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"GitOps CRDs not served within {timeout:.0f}s")
        time.sleep(0.2)
    return created


def served(cluster: Cluster, api_version: str, kind: str) -> bool:
    """The apiserver serves the kind (it may drop connections while it starts to)."""
    try:
        cluster.list(api_version, kind, "default")
    except Exception:
        return False
    return True


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)
