"""Who else writes a workload: the owner a revert must go through (Argo CD, Flux, Helm).

Each tool marks what it applies, and those marks are read here from the workload's own
metadata, strongest first:

- Argo CD: the annotation `argocd.argoproj.io/tracking-id`, `<app>:<group>/<kind>:<ns>/<name>`
  (`<app>` is `<app namespace>_<app>` for an Application outside Argo CD's own namespace).
  It counts only when it names this very object: a copied manifest carries another's.
- Flux: the labels `kustomize.toolkit.fluxcd.io/name|namespace` (a Kustomization) and
  `helm.toolkit.fluxcd.io/name|namespace` (a HelmRelease).
- Helm (the CLI): the annotations `meta.helm.sh/release-name|namespace`. A release that
  helm-controller installs carries them too, with the HelmRelease's labels, which win.
- Argo CD's legacy label tracking: `app.kubernetes.io/instance`. Weakest: Helm charts set
  that label to the release name, so it is only a candidate until an Application lists the
  workload among its `status.resources`.
  `app.kubernetes.io/managed-by: Helm` alone proves nothing (Argo CD renders charts too).

A mark is a claim; whether the owner exists and really holds the workload (an
Application's `status.resources`, a Helm release Secret) is confirmed by whoever reads the
cluster, and recorded with how the owner was found.
"""

from dataclasses import dataclass
from typing import Literal

from core.models import Workload

OwnerKind = Literal["argocd", "kustomization", "helmrelease", "helm"]

TRACKING_ID = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
KUSTOMIZATION_LABELS = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
HELMRELEASE_LABELS = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
HELM_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
# Flux's per-object off switch: kustomize-controller skips an in-cluster object carrying it.
FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
# Backstop's mark on what it froze: the rollback that froze it (workers/owners/).
FROZEN_BY = "backstop.io/frozen-by"

# The API group of each workload kind, as a tracking id writes it.
GROUPS = {
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "Rollout": "argoproj.io",
    # Not a workload, but tracked the same way by a parent Application (app of apps).
    "Application": "argoproj.io",
}


@dataclass(frozen=True)
class Claim:
    """A mark on a workload that names its owner: what kind, which object, and the mark."""

    kind: OwnerKind
    namespace: str
    name: str
    found_by: str
    # True when the mark itself proves ownership; False when it must be confirmed first.
    certain: bool = True


def claims(metadata: dict, workload: Workload, *, argocd_namespace: str = "argocd") -> list[Claim]:
    """The owners a workload's marks name, strongest first (see the module docstring)."""
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    found: list[Claim] = []
    tracked = tracking_claim(annotations.get(TRACKING_ID, ""), workload, argocd_namespace)
    if tracked is not None:
        found.append(tracked)
    flux: tuple[tuple[OwnerKind, tuple[str, str]], ...] = (
        ("kustomization", KUSTOMIZATION_LABELS),
        ("helmrelease", HELMRELEASE_LABELS),
    )
    for kind, (name_key, namespace_key) in flux:
        if labels.get(name_key):
            namespace = labels.get(namespace_key) or workload.namespace
            found.append(Claim(kind, namespace, labels[name_key], f"labels {name_key}"))
    release = annotations.get(HELM_ANNOTATIONS[0])
    if release and not any(c.kind == "helmrelease" for c in found):
        namespace = annotations.get(HELM_ANNOTATIONS[1]) or workload.namespace
        # Confirmed by the release's Secret: the annotations outlive an uninstall.
        found.append(Claim("helm", namespace, release, f"annotation {HELM_ANNOTATIONS[0]}", False))
    instance = labels.get(INSTANCE_LABEL)
    if instance and tracked is None:
        found.append(
            Claim("argocd", argocd_namespace, instance, f"label {INSTANCE_LABEL}", certain=False)
        )
    return found


def tracking_claim(value: str, workload: Workload, argocd_namespace: str) -> Claim | None:
    """The Application a tracking id names, if the id is well formed and names `workload`."""
    app, _, rest = value.partition(":")
    group_kind, _, namespaced = rest.partition(":")
    group, _, kind = group_kind.rpartition("/")
    namespace, _, name = namespaced.rpartition("/")
    if not app or not kind or not name:
        return None
    if (group, kind, name) != (GROUPS.get(workload.kind, ""), workload.kind, workload.name):
        return None  # a copied manifest: the id names another object
    if (namespace or workload.namespace) != workload.namespace:
        return None
    app_namespace, _, app_name = app.rpartition("_")
    return Claim("argocd", app_namespace or argocd_namespace, app_name, f"annotation {TRACKING_ID}")
