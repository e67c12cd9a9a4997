"""Flux stand-ins: kustomize-controller and helm-controller loops over Flux's real objects.

Shared, as in Flux: an object is reconciled when `spec.interval` has passed since its
last reconcile, when its generation changes, or when `reconcile.fluxcd.io/requestedAt`
changes (`flux reconcile`); never while `spec.suspend` is true (its status then stays as
it was). Sources are GitRepository objects (source.toolkit.fluxcd.io/v1): the stand-in
plays source-controller's part only so far as to resolve `spec.url` (file://) and
`spec.ref.branch` to a sha, which it writes as the artifact revision `<branch>@sha1:<sha>`
(SourceController on its own interval, and each consumer as it reconciles).

kustomize-controller (kustomize.toolkit.fluxcd.io/v1 Kustomization): applies the YAML
under `spec.path` at the source revision server-side, forcing conflicts (Flux's SSA
manager always forces), as field manager `kustomize-controller`, with the owner labels
`kustomize.toolkit.fluxcd.io/name|namespace`, into `spec.targetNamespace` (else the
Kustomization's namespace) where an object names none; skips every object whose
in-cluster copy (or Git copy) is annotated or labelled
`kustomize.toolkit.fluxcd.io/reconcile: disabled`; records `status.lastAppliedRevision`,
`lastAttemptedRevision`, `inventory.entries[{id: <ns>_<name>_<group>_<kind>, v}]`,
`observedGeneration` and the Ready condition ("Applied revision: ...").
Simplifies: no kustomize build (kustomization.yaml files are ignored), no pruning,
health checks, dependsOn, decryption or post-build substitution.

helm-controller (helm.toolkit.fluxcd.io/v2 HelmRelease): the chart is `spec.chart.spec.chart`,
a chart directory in the GitRepository of `spec.chart.spec.sourceRef` (for Git sources
the chart's own version counts, as upstream); values are the chart's merged with
`spec.values`. Like DetermineReleaseState it installs when no release is stored;
upgrades when the release in storage is not the one in `status.history` (someone ran
helm outside it: "not observed"), or when the chart version or the values digest
changed; re-applies the release manifest when `spec.driftDetection.mode` is `enabled`
and the cluster drifted (no new revision); otherwise leaves the release alone, so by
default a hand edit of a workload survives until the next upgrade. It releases through
the Helm code in helm.py (Secrets `owner: helm`, as the Helm SDK stores them) as field
manager `helm-controller`, labelling objects `helm.toolkit.fluxcd.io/name|namespace`
(upstream's origin-labels post-renderer), and records `status.history` (newest first),
`lastAttemptedRevision`, `lastAttemptedConfigDigest`, `lastAttemptedReleaseAction`,
`storageNamespace` and the Ready/Released conditions. Simplifies: release and storage
namespace are one (`spec.targetNamespace` or the HelmRelease's); no remediation, tests,
dependsOn, valuesFrom or postRenderers.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from testbed.gitops import helm
from testbed.gitops.cluster import Controller, body, matches, now, seconds
from testbed.gitops.git import GitRepo, load

SOURCE_API = "source.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"
HELM_API = "helm.toolkit.fluxcd.io/v2"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
HISTORY_KEEP = 5


class FluxLoop(Controller):
    """The reconcile schedule every Flux controller shares (interval, generation, request)."""

    api = ""
    kind = ""

    def __init__(self, kubeconfig: Path, *, namespace: str | None = None, period: float = 0.2):
        super().__init__(kubeconfig, namespace=namespace, period=period)
        self._last: dict[str, tuple[float, int, str | None]] = {}

    def objects(self) -> list[dict]:
        return self.cluster.list(self.api, self.kind, self.namespace)

    def reconcile(self, obj: dict) -> None:
        if obj["spec"].get("suspend"):
            return
        meta = obj["metadata"]
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        last = self._last.get(meta["uid"])
        due = last is None or (
            time.monotonic() - last[0] >= seconds(obj["spec"]["interval"])
            or last[1:] != (meta["generation"], requested)
        )
        if not due:
            return
        self._last[meta["uid"]] = (time.monotonic(), meta["generation"], requested)
        try:
            status = self.sync(obj)
        except Exception as error:  # shown as Flux shows it, then recorded by the loop
            failed = ready(False, "ReconciliationFailed", str(error))
            self.cluster.merge_patch(obj, {"status": {"conditions": [failed]}}, "status")
            raise
        status["observedGeneration"] = meta["generation"]
        if requested:
            status["lastHandledReconcileAt"] = requested
        self.cluster.merge_patch(obj, {"status": status}, "status")

    def sync(self, obj: dict) -> dict:
        """Bring the cluster to obj's desired state; return the status fields to write."""
        raise NotImplementedError

    def source(self, obj: dict, ref: dict) -> tuple[GitRepo, str, str]:
        """The repository, sha and Flux revision string of the GitRepository `ref` names."""
        namespace = ref.get("namespace") or obj["metadata"]["namespace"]
        source = self.cluster.get(SOURCE_API, "GitRepository", namespace, ref["name"])
        if source is None:
            raise LookupError(f"GitRepository {namespace}/{ref['name']} not found")
        repo = GitRepo.from_url(source["spec"]["url"])
        branch = (source["spec"].get("ref") or {}).get("branch") or "master"
        sha = repo.resolve(branch)
        revision = f"{branch}@sha1:{sha}"
        if ((source.get("status") or {}).get("artifact") or {}).get("revision") != revision:
            artifact = {
                "revision": revision,
                "path": f"gitrepository/{namespace}/{ref['name']}",
                "url": source["spec"]["url"],
                "lastUpdateTime": now(),
            }
            message = f"stored artifact for revision '{revision}'"
            status = {"artifact": artifact, "conditions": [ready(True, "Succeeded", message)]}
            self.cluster.merge_patch(source, {"status": status}, "status")
        return repo, sha, revision


class SourceController(FluxLoop):
    """source-controller for the GitRepositories in `namespace`: every `spec.interval` it
    resolves the branch and records the artifact revision, whether or not anything that
    consumes the source is suspended (consumers also refresh it as they reconcile)."""

    name = "source-controller"
    api, kind = SOURCE_API, "GitRepository"

    def sync(self, repo: dict) -> dict:
        meta = repo["metadata"]
        self.source(repo, {"name": meta["name"], "namespace": meta["namespace"]})
        return {}


class KustomizeController(FluxLoop):
    """kustomize-controller for the Kustomizations in `namespace` (all when None)."""

    name = "kustomize-controller"
    api, kind = KUSTOMIZE_API, "Kustomization"

    def sync(self, ks: dict) -> dict:
        spec, meta = ks["spec"], ks["metadata"]
        repo, sha, revision = self.source(ks, spec["sourceRef"])
        owner = {
            "kustomize.toolkit.fluxcd.io/name": meta["name"],
            "kustomize.toolkit.fluxcd.io/namespace": meta["namespace"],
        }
        entries = []
        for obj in repo.manifests(sha, spec.get("path", "")):
            if obj.get("kind") == "Kustomization" and "kustomize.config" in obj["apiVersion"]:
                continue  # a kustomize build file, not an object to apply
            obj_meta = obj.setdefault("metadata", {})
            if self.cluster.resource(obj["apiVersion"], obj["kind"])[1]:
                fallback = obj_meta.get("namespace") or meta["namespace"]
                obj_meta["namespace"] = spec.get("targetNamespace") or fallback
            obj_meta.setdefault("labels", {}).update(owner)
            group, _, version = obj["apiVersion"].rpartition("/")
            where = f"{obj_meta.get('namespace', '')}_{obj_meta['name']}"
            entries.append({"id": f"{where}_{group}_{obj['kind']}", "v": version})
            if not (disabled(obj) or disabled(self.cluster.live(obj))):
                self.cluster.apply(obj, self.name)
        return {
            "lastAttemptedRevision": revision,
            "lastAppliedRevision": revision,
            "inventory": {"entries": entries},
            "conditions": [ready(True, "ReconciliationSucceeded", f"Applied revision: {revision}")],
        }


class HelmController(FluxLoop):
    """helm-controller for the HelmReleases in `namespace` (all when None)."""

    name = "helm-controller"
    api, kind = HELM_API, "HelmRelease"

    def sync(self, hr: dict) -> dict:
        spec, meta = hr["spec"], hr["metadata"]
        chart_spec = spec["chart"]["spec"]
        repo, sha, _ = self.source(hr, chart_spec["sourceRef"])
        chart = helm.Chart.from_git(repo, sha, chart_spec["chart"])
        values = spec.get("values") or {}
        namespace = spec.get("targetNamespace") or meta["namespace"]
        name = release_name(hr)
        labels = {
            "helm.toolkit.fluxcd.io/name": meta["name"],
            "helm.toolkit.fluxcd.io/namespace": meta["namespace"],
        }
        stored = helm.releases(self.cluster, namespace, name)
        history = (hr.get("status") or {}).get("history") or []
        by = helm.Runner(self.name, tuple(labels.items()))
        action, reason = "", "release in-sync with desired state"
        if not stored:
            action, reason = "install", "no release in storage for object"
            helm.install(self.cluster, namespace, name, chart, values, by)
        elif not history or digest(stored[-1]) != history[0]["digest"]:
            action, reason = "upgrade", "release not observed to be made for object"
        elif stored[-1]["chart"]["metadata"]["version"] != chart.version:
            action, reason = "upgrade", "release chart changed"
        elif config_digest(stored[-1]["config"]) != config_digest(values):
            action, reason = "upgrade", "release config values changed"
        elif (spec.get("driftDetection") or {}).get("mode") == "enabled":
            self._correct_drift(stored[-1])
        if action == "upgrade":
            helm.upgrade(self.cluster, namespace, name, chart, values, by)
        current = helm.releases(self.cluster, namespace, name)[-1]
        snapshot = {
            "name": name,
            "namespace": namespace,
            "version": current["version"],
            "status": current["info"]["status"],
            "chartName": chart.name,
            "chartVersion": current["chart"]["metadata"]["version"],
            "appVersion": current["chart"]["metadata"].get("appVersion", ""),
            "configDigest": config_digest(current["config"]),
            "digest": digest(current),
            "firstDeployed": current["info"]["first_deployed"][:19] + "Z",
            "lastDeployed": current["info"]["last_deployed"][:19] + "Z",
        }
        if not history or history[0]["version"] != snapshot["version"]:
            history = [snapshot, *history][:HISTORY_KEEP]
        status = {
            "history": history,
            "storageNamespace": namespace,
            "helmChart": f"{meta['namespace']}/{meta['namespace']}-{meta['name']}",
            "lastAttemptedRevision": chart.version,
            "lastAttemptedConfigDigest": config_digest(values),
            "lastAttemptedGeneration": meta["generation"],
        }
        if action:
            status["lastAttemptedReleaseAction"] = action
            release = f"{namespace}/{name}.v{current['version']}"
            message = f"Helm {action} succeeded for release {release} ({reason})"
            status["conditions"] = [ready(True, f"{action.capitalize()}Succeeded", message)]
        return status

    def _correct_drift(self, release: dict) -> None:
        """Re-apply the objects of the stored manifest that drifted (no new revision)."""
        for obj in load(release["manifest"]):
            obj.setdefault("metadata", {}).setdefault("namespace", release["namespace"])
            live = self.cluster.live(obj)
            if live is None or not matches(obj, live):
                self.cluster.apply(obj, self.name)


def release_name(hr: dict) -> str:
    """helm-controller's release name: spec.releaseName, else [targetNamespace-]name."""
    spec = hr["spec"]
    if spec.get("releaseName"):
        return spec["releaseName"]
    prefix = f"{spec['targetNamespace']}-" if spec.get("targetNamespace") else ""
    return prefix + hr["metadata"]["name"]


def disabled(obj: dict | None) -> bool:
    """Whether an object opts out of kustomize-controller (annotation or label)."""
    meta = (obj or {}).get("metadata") or {}
    marks = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
    return marks.get(RECONCILE) == "disabled"


def digest(release: dict) -> str:
    """A digest of what a stored release is (not of its status, which supersession changes)."""
    seen = {k: release[k] for k in ("name", "namespace", "version", "config", "manifest")}
    return _sha256(seen)


def config_digest(values: dict) -> str:
    return _sha256(values)


def _sha256(value) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def ready(ok: bool, reason: str, message: str) -> dict:
    """Flux's Ready condition."""
    return {
        "type": "Ready",
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }


def git_repository(name: str, url: str, branch: str = "main", interval: str = "1m") -> dict:
    """A GitRepository body for a local repository."""
    spec = {"url": url, "interval": interval, "ref": {"branch": branch}}
    return body(SOURCE_API, "GitRepository", name, spec)


def kustomization(name: str, source: str, path: str, interval: str = "2s", **spec) -> dict:
    """A Kustomization body applying `path` of GitRepository `source` (extra spec fields)."""
    spec = {
        "interval": interval,
        "path": path,
        "prune": False,
        "sourceRef": {"kind": "GitRepository", "name": source},
        **spec,
    }
    return body(KUSTOMIZE_API, "Kustomization", name, spec)


def helm_release(name: str, source: str, chart: str, interval: str = "2s", **spec) -> dict:
    """A HelmRelease body for chart directory `chart` of GitRepository `source`."""
    chart_spec = {"chart": chart, "sourceRef": {"kind": "GitRepository", "name": source}}
    spec = {"interval": interval, "chart": {"spec": chart_spec}, **spec}
    return body(HELM_API, "HelmRelease", name, spec)
