"""Helm stand-in: release storage in Secrets, in Helm's own encoding, and the CLI's
install / upgrade / rollback / history, as `helm` (v3 and v4) does them.

Storage, as pkg/storage/driver/secrets.go writes it: one Secret per release revision,
named `sh.helm.release.v1.<name>.v<version>`, of type `helm.sh/release.v1`, labelled
`name`, `owner: helm`, `status`, `version` (and `createdAt` / `modifiedAt`), whose
`release` entry is base64(gzip(JSON of the release)). Helm base64-encodes before handing
the bytes to the Secret, so on the wire (Secret data is base64 again) it is encoded twice.
The release JSON carries name, namespace, version, info{first_deployed, last_deployed,
description, status}, chart{metadata{name, version, appVersion}, values, templates},
config (the user-supplied values) and manifest (the rendered documents, each headed
`# Source: <chart>/templates/<file>`).

The CLI: `install` writes version 1 "Install complete"; `upgrade` writes version N+1
"Upgrade complete" and marks the deployed one superseded; `rollback` writes N+1 copying
the target's chart, config and manifest, "Rollback to <target>"; `history` reads what
`helm history` prints. Each applies the manifest server-side as field manager `helm`,
forcing conflicts (the chart's fields win, as in Helm 3's three-way merge), with the
`meta.helm.sh/release-name|namespace` annotations and `app.kubernetes.io/managed-by: Helm`
label Helm puts on every object.

Simplifies: a chart is a directory in Git (Chart.yaml, values.yaml, templates/*.yaml)
whose templates may only use `{{ .Values.<path> }}`, `{{ .Release.Name|Namespace }}` and
`{{ .Chart.Name|Version|AppVersion }}`, not Go templates; no hooks, tests or waiting;
releases are written complete (never pending-*); objects dropped from a chart are kept.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import yaml

from testbed.gitops.cluster import Cluster
from testbed.gitops.git import GitRepo, load

SECRET_TYPE = "helm.sh/release.v1"
MANAGER = "helm"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
MANAGED_BY = "app.kubernetes.io/managed-by"
_PLACEHOLDER = re.compile(r"\{\{-?\s*\.(Values|Release|Chart)\.([A-Za-z0-9_.]+)\s*-?\}\}")


class HelmError(RuntimeError):
    """What the helm CLI would print as `Error: ...`."""


@dataclass
class Chart:
    """A chart: its metadata, default values and templates (file name -> text)."""

    name: str
    version: str
    app_version: str = ""
    values: dict = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_git(cls, repo: GitRepo, revision: str, path: str) -> Chart:
        """The chart in directory `path` of repo at revision."""
        root = path.strip("/").removeprefix("./")
        meta = load(repo.show(revision, f"{root}/Chart.yaml"))[0]
        files = repo.files(revision, root)
        defaults = f"{root}/values.yaml"
        values = load(repo.show(revision, defaults)) if defaults in files else []
        templates = {
            name.removeprefix(f"{root}/"): repo.show(revision, name)
            for name in files
            if name.startswith(f"{root}/templates/")
        }
        return cls(
            name=meta["name"],
            version=str(meta["version"]),
            app_version=str(meta.get("appVersion", "")),
            values=values[0] if values else {},
            templates=templates,
        )

    def metadata(self) -> dict:
        meta = {"apiVersion": "v2", "name": self.name, "version": self.version}
        return {**meta, "appVersion": self.app_version} if self.app_version else meta

    def render(self, release: str, namespace: str, config: dict, labels=None) -> str:
        """The release manifest: each rendered document headed by its template's path;
        `labels` are added to every object, as a post-renderer (helm-controller's) does."""
        scope = {
            "Values": merged(self.values, config),
            "Release": {"Name": release, "Namespace": namespace},
            "Chart": {"Name": self.name, "Version": self.version, "AppVersion": self.app_version},
        }
        parts = []
        for name in sorted(self.templates):
            text = _PLACEHOLDER.sub(lambda m: _lookup(scope, m[1], m[2]), self.templates[name])
            if "{{" in text:
                raise HelmError(f"{name}: only .Values/.Release/.Chart placeholders are supported")
            for doc in re.split(r"^---\s*$", text, flags=re.MULTILINE):
                if labels and doc.strip():
                    obj = load(doc)[0]
                    obj.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
                    doc = yaml.safe_dump(obj, sort_keys=False)
                if doc.strip():
                    parts.append(f"---\n# Source: {self.name}/{name}\n{doc.strip()}\n")
        return "".join(parts)


def encode(release: dict) -> str:
    """Helm's storage encoding of a release: base64 of gzip of its JSON."""
    return base64.b64encode(gzip.compress(json.dumps(release).encode(), 9)).decode()


def decode(text: str) -> dict:
    """A release from Helm's storage encoding (older, uncompressed releases too)."""
    raw = base64.b64decode(text)
    return json.loads(gzip.decompress(raw) if raw[:3] == b"\x1f\x8b\x08" else raw)


def secret_name(name: str, version: int) -> str:
    return f"sh.helm.release.v1.{name}.v{version}"


def storage_secret(release: dict) -> dict:
    """The Secret Helm stores a release revision in."""
    labels = {
        "name": release["name"],
        "owner": "helm",
        "status": release["info"]["status"],
        "version": str(release["version"]),
        "createdAt": str(int(datetime.now(UTC).timestamp())),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(release["name"], release["version"]), "labels": labels},
        "type": SECRET_TYPE,
        # Secret data is base64 on the wire, so Helm's base64 text is encoded once more.
        "data": {"release": base64.b64encode(encode(release).encode()).decode()},
    }


def releases(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    """Every stored revision of release `name`, oldest first."""
    secrets = cluster.list("v1", "Secret", namespace, labelSelector=f"owner=helm,name={name}")
    found = [
        decode(base64.b64decode(s["data"]["release"]).decode())
        for s in secrets
        if s.get("type") == SECRET_TYPE
    ]
    return sorted(found, key=lambda r: r["version"])


def history(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    """`helm history <name>`: revision, updated, status, chart, app version, description."""
    rows = []
    for release in releases(cluster, namespace, name):
        meta = release["chart"]["metadata"]
        rows.append(
            {
                "revision": release["version"],
                "updated": release["info"]["last_deployed"],
                "status": release["info"]["status"],
                "chart": f"{meta['name']}-{meta['version']}",
                "app_version": meta.get("appVersion", ""),
                "description": release["info"]["description"],
            }
        )
    return rows


@dataclass(frozen=True)
class Runner:
    """Who drives Helm: the CLI, or helm-controller (its field manager, and the labels
    its post-renderer adds to every object)."""

    manager: str = MANAGER
    labels: tuple[tuple[str, str], ...] = ()


CLI = Runner()


def install(cluster: Cluster, namespace: str, name: str, chart: Chart, values=None, by=CLI):
    """`helm install`: render, apply, store version 1 as deployed."""
    if any(r["info"]["status"] != "uninstalled" for r in releases(cluster, namespace, name)):
        raise HelmError(f"INSTALLATION FAILED: cannot re-use a name that is still in use: {name}")
    release = _release(name, namespace, chart, values or {}, 1, dict(by.labels))
    return _deploy(cluster, release, None, "Install complete", by.manager)


def upgrade(cluster: Cluster, namespace: str, name: str, chart: Chart, values=None, by=CLI):
    """`helm upgrade`: render, apply, store N+1 as deployed and supersede the deployed one."""
    stored = releases(cluster, namespace, name)
    deployed = [r for r in stored if r["info"]["status"] == "deployed"]
    if not deployed:
        raise HelmError(f'UPGRADE FAILED: "{name}" has no deployed releases')
    version = stored[-1]["version"] + 1
    release = _release(name, namespace, chart, values or {}, version, dict(by.labels))
    release["info"]["first_deployed"] = deployed[-1]["info"]["first_deployed"]
    return _deploy(cluster, release, deployed[-1], "Upgrade complete", by.manager)


def rollback(cluster: Cluster, namespace: str, name: str, revision: int = 0) -> dict:
    """`helm rollback <name> [revision]`: a new revision copying the target (default: the
    one before the latest), the deployed one superseded."""
    stored = {r["version"]: r for r in releases(cluster, namespace, name)}
    if not stored:
        raise HelmError(f'release: not found: "{name}"')
    current = stored[max(stored)]
    target = stored.get(revision or current["version"] - 1)
    if target is None:
        raise HelmError(f"release has no {revision or current['version'] - 1} version")
    release = copy.deepcopy(target)
    release["version"] = current["version"] + 1
    release["info"] = {
        "first_deployed": current["info"]["first_deployed"],
        "rollback_revision": target["version"],
    }
    deployed = [r for r in stored.values() if r["info"]["status"] == "deployed"]
    return _deploy(
        cluster, release, deployed[-1] if deployed else None, f"Rollback to {target['version']}"
    )


def _release(name, namespace, chart: Chart, config: dict, version: int, labels) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "version": version,
        "info": {"first_deployed": _timestamp()},
        "chart": {
            "metadata": chart.metadata(),
            "values": chart.values,
            "templates": [
                {"name": n, "data": base64.b64encode(t.encode()).decode()}
                for n, t in sorted(chart.templates.items())
            ],
        },
        "config": config,
        "manifest": chart.render(name, namespace, config, labels),
    }


def _deploy(cluster: Cluster, release: dict, previous, description, manager=MANAGER) -> dict:
    """Apply a release's manifest, then store it deployed and `previous` superseded."""
    for obj in load(release["manifest"]):
        meta = obj.setdefault("metadata", {})
        if cluster.resource(obj["apiVersion"], obj["kind"])[1]:
            meta.setdefault("namespace", release["namespace"])
        meta.setdefault("annotations", {}).update(
            {RELEASE_NAME: release["name"], RELEASE_NAMESPACE: release["namespace"]}
        )
        meta.setdefault("labels", {})[MANAGED_BY] = "Helm"
        cluster.apply(obj, manager)
    release["info"].update(
        {"last_deployed": _timestamp(), "status": "deployed", "description": description}
    )
    if previous is not None:
        previous["info"]["status"] = "superseded"
        _store(cluster, previous, replace=True)
    _store(cluster, release)
    return release


def _store(cluster: Cluster, release: dict, replace: bool = False) -> None:
    """Create a revision's Secret, or replace it whole as Helm's Update does."""
    secret = storage_secret(release)
    secret["metadata"]["namespace"] = release["namespace"]
    path = cluster.path("v1", "Secret", release["namespace"])
    if replace:
        labels = secret["metadata"]["labels"]
        labels["modifiedAt"] = labels.pop("createdAt")
        cluster.request("PUT", f"{path}/{secret['metadata']['name']}", secret)
    else:
        cluster.request("POST", path, secret)


def merged(base: dict, override: dict) -> dict:
    """Helm's values merge: override wins, maps merge key by key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _lookup(scope: dict, root: str, path: str) -> str:
    value = scope[root]
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "<no value>" if value is None else str(value)  # what Go templates print


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
