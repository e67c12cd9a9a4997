"""Helm release Secrets built the way Helm writes them (double base64 around gzip),
independently of Backstop's codec, and in-memory stand-ins of Backstop's own `Objects`
and `Kube` interfaces holding them: for tests/unit/test_helm_hand.py and
test_helm_storage.py."""

import base64
import copy
import gzip
import json
from datetime import UTC, datetime

from core.integrations.kubernetes import Conflict
from core.models import Workload
from core.owners import Claim

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WEB = Workload("default", "shop", "Deployment", "web")
CLAIM = Claim("helm", "shop", "web", "annotation meta.helm.sh/release-name", certain=False)
SERVICE = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n"


def workload_doc(image: str, *, kind="Deployment", name="web", namespace=None, init=None) -> str:
    meta = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    inits = f"      initContainers:\n        - name: migrate\n          image: {init}\n"
    return (
        f"apiVersion: {'argoproj.io/v1alpha1' if kind == 'Rollout' else 'apps/v1'}\n"
        f"kind: {kind}\nmetadata:\n{meta}spec:\n  template:\n    spec:\n"
        + (inits if init else "")
        + f"      containers:\n        - name: web\n          image: {image}\n"
    )


def manifest(image: str, **doc) -> str:
    """What Helm stores: each document headed by its template's path."""
    return (
        f"---\n# Source: web/templates/service.yaml\n{SERVICE}"
        f"---\n# Source: web/templates/deployment.yaml\n{workload_doc(image, **doc)}"
    )


def release(version: int, status: str, image: str, **doc) -> dict:
    described = "Install complete" if version == 1 else "Upgrade complete"
    info = {"first_deployed": "2026-12-01T10:00Z", "last_deployed": f"2026-12-0{version}T10:00Z"}
    info.update(deleted="", description=described, status=status, notes=f"notes {version}")
    chart = {"metadata": {"name": "web", "version": f"1.0.{version}"}}
    body = {"name": "web", "namespace": "shop", "version": version, "info": info, "chart": chart}
    hooks = [{"name": f"hook-{version}"}]
    return {**body, "config": {"image": image}, "manifest": manifest(image, **doc), "hooks": hooks}


def wire(payload: bytes, *, gzipped=True) -> str:
    """`data.release` as the API returns it: base64(base64(gzip(payload)))."""
    helm_text = base64.b64encode(gzip.compress(payload) if gzipped else payload)
    return base64.b64encode(helm_text).decode()


def secret(body: dict, *, labels=None, data: str | None = None, kind="helm.sh/release.v1"):
    """The Secret Helm stores release `body` in."""
    version, status = body["version"], body["info"]["status"]
    own = {"name": "web", "owner": "helm", "status": status, "version": str(version)}
    meta = {"name": f"sh.helm.release.v1.web.v{version}", "namespace": "shop"}
    meta["labels"] = {**own, "createdAt": "1764000000", **(labels or {})}
    value = data if data is not None else wire(json.dumps(body).encode())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": kind,
        "data": {"release": value},
    }


def read(stored: dict) -> dict:
    """A stored release, decoded by hand."""
    raw = base64.b64decode(base64.b64decode(stored["data"]["release"]))
    assert raw[:3] == b"\x1f\x8b\x08"
    return json.loads(gzip.decompress(raw))


def merged(target, patch):
    """RFC 7386 JSON merge patch (no nulls needed here)."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    return {**target, **{k: merged(target.get(k), v) for k, v in patch.items()}}


class Secrets:
    """In-memory Secrets, as Backstop's `Objects` lists, creates and merge-patches them."""

    def __init__(self, *secrets: dict):
        self.items: dict[str, dict] = {}
        self.writes: list[tuple[str, str]] = []
        self.fail: Exception | None = None
        for item in secrets:
            self.put(item)

    def put(self, item: dict) -> None:
        item["metadata"].setdefault("resourceVersion", "1")
        self.items[item["metadata"]["name"]] = item

    def secrets(self, namespace, labels) -> list[dict]:
        return [
            copy.deepcopy(s)
            for s in self.items.values()
            if s["metadata"]["namespace"] == namespace
            and all(s["metadata"]["labels"].get(k) == v for k, v in labels.items())
        ]

    def create_secret(self, namespace, body) -> dict:
        if self.fail is not None:
            raise self.fail
        if body["metadata"]["name"] in self.items:
            raise Conflict("exists")
        created = merged(body, {"metadata": {"namespace": namespace}})
        self.put(created)
        self.writes.append(("create", body["metadata"]["name"]))
        return copy.deepcopy(created)

    def merge_secret(self, namespace, name, body) -> dict:
        live = self.items[name]
        wanted = body["metadata"].pop("resourceVersion", None)
        if wanted and wanted != live["metadata"]["resourceVersion"]:
            raise Conflict("moved")
        patched = merged(live, body)
        patched["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
        self.put(patched)
        self.writes.append(("merge", name))
        return copy.deepcopy(patched)

    def release(self, version: int) -> dict:
        return read(self.items[f"sh.helm.release.v1.web.v{version}"])


def replica_set(revision: str, image: str, template_hash: str) -> dict:
    return {
        "metadata": {
            "name": f"web-{template_hash}",
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "labels": {"pod-template-hash": template_hash},
            "ownerReferences": [{"uid": "u1", "controller": True}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"pod-template-hash": template_hash}},
                "spec": {"containers": [{"name": "web", "image": image, "imagePullPolicy": "X"}]},
            }
        },
    }


class Kube:
    """The workload and its ReplicaSets, as Backstop's Kube reads them."""

    def __init__(self, *replica_sets: dict):
        self.replica_sets = list(replica_sets)

    def get(self, kind, namespace, name) -> dict:
        return {"metadata": {"namespace": namespace, "name": name, "uid": "u1"}, "spec": {}}

    def owned(self, kind, owner) -> list[dict]:
        return copy.deepcopy(self.replica_sets)


GOOD_RS = replica_set("1", "shop/web:1", "aaa")
BAD_RS = replica_set("2", "shop/web:2", "bbb")
