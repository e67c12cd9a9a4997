"""Argo CD ApplicationSet controller stand-in, over real ApplicationSets (argoproj.io/v1alpha1).

As upstream (applicationset/controllers): every pass it generates one parameter set per
element of the ApplicationSet's `list` generators, renders `spec.template` with it
(`{{key}}`, or `{{.key}}` with goTemplate) and makes the child Applications match:
creates missing ones, owned by the ApplicationSet (ownerReferences, controller and
blockOwnerDeletion), and replaces a child's whole `spec` when it differs from the
generated one. So a change made to a child (auto-sync switched off, say) is undone at
the next pass, unless `spec.syncPolicy.applicationsSync` forbids updates
(`create-only`, `create-delete`) or an `ignoreApplicationDifferences` entry (jsonPointers,
optionally for some names) keeps the child's value. Children no longer generated are
deleted under `sync` (the default) and `create-delete`. Status: `resources[]`,
`resourcesCount` and the ResourcesUpToDate condition.

Simplifies: only the list generator; no jqPathExpressions, preservedFields, template
patches, progressive sync or finalizers; labels and annotations of the template are
added to a child's, not made to replace them.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from testbed.gitops.argocd import API
from testbed.gitops.cluster import Controller, body, compact, now

MANAGER = "applicationset-controller"
_PARAMETER = re.compile(r"\{\{\s*\.?([\w.-]+)\s*\}\}")
UPDATES = {"sync": True, "create-update": True, "create-only": False, "create-delete": False}
DELETES = {"sync": True, "create-delete": True, "create-only": False, "create-update": False}


class ApplicationSets(Controller):
    """The ApplicationSet controller for the ApplicationSets in `namespace` (all when None)."""

    name = MANAGER

    def __init__(self, kubeconfig: Path, *, namespace: str | None = None, period: float = 0.3):
        super().__init__(kubeconfig, namespace=namespace, period=period)

    def objects(self) -> list[dict]:
        return self.cluster.list(API, "ApplicationSet", self.namespace)

    def reconcile(self, appset: dict) -> None:
        spec, meta = appset["spec"], appset["metadata"]
        policy = (spec.get("syncPolicy") or {}).get("applicationsSync", "sync")
        owner = {
            "apiVersion": API,
            "kind": "ApplicationSet",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        wanted = {}
        for params in parameters(spec["generators"]):
            child = compact(render(spec["template"], params))
            child_meta = child["metadata"]
            child_meta.setdefault("namespace", meta["namespace"])
            child_meta["ownerReferences"] = [owner]
            wanted[child_meta["name"]] = child
            live = self.cluster.get(API, "Application", child_meta["namespace"], child_meta["name"])
            if live is None:
                self.cluster.create({"apiVersion": API, "kind": "Application", **child})
            elif UPDATES[policy]:
                self._update(live, child, spec.get("ignoreApplicationDifferences") or [])
        if DELETES[policy]:
            for app in self.cluster.list(API, "Application", meta["namespace"]):
                owners = app["metadata"].get("ownerReferences") or []
                mine = any(o.get("uid") == meta["uid"] for o in owners)
                if mine and app["metadata"]["name"] not in wanted:
                    self.cluster.delete(app)
        resources = [
            {
                "group": "argoproj.io",
                "version": "v1alpha1",
                "kind": "Application",
                "name": name,
                "namespace": child["metadata"]["namespace"],
            }
            for name, child in sorted(wanted.items())
        ]
        condition = {
            "type": "ResourcesUpToDate",
            "status": "True",
            "reason": "ApplicationSetUpToDate",
            "message": "All applications have been generated successfully",
            "lastTransitionTime": now(),
        }
        status = appset.get("status") or {}
        if status.get("resources") != resources:
            fields = {"resources": resources, "resourcesCount": len(resources)}
            self.cluster.merge_patch(
                appset, {"status": {**fields, "conditions": [condition]}}, "status"
            )

    def _update(self, live: dict, child: dict, ignored: list[dict]) -> None:
        """Replace the child's spec with the generated one, but for ignored pointers."""
        spec = copy.deepcopy(child["spec"])
        for rule in ignored:
            if rule.get("name") and rule["name"] != live["metadata"]["name"]:
                continue
            for pointer in rule.get("jsonPointers") or []:
                _copy_pointer(live, {"spec": spec}, pointer)
        meta = live["metadata"]
        old = {key: meta.get(key) or {} for key in ("labels", "annotations")}
        new = {key: {**old[key], **(child["metadata"].get(key) or {})} for key in old}
        if spec == live.get("spec") and new == old:
            return
        values = {"spec": spec, **{f"metadata/{key}": value for key, value in new.items()}}
        self.cluster.json_patch(
            live, [{"op": "add", "path": f"/{path}", "value": v} for path, v in values.items()]
        )


def parameters(generators: list[dict]) -> list[dict]:
    """One parameter set per element of every list generator."""
    lists = [(g.get("list") or {}).get("elements", []) for g in generators]
    return [dict(element) for elements in lists for element in elements]


def render(template, params: dict):
    """template with `{{key}}` / `{{.key}}` replaced by params (dotted keys reach nested maps)."""
    if isinstance(template, dict):
        return {key: render(value, params) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, params) for value in template]
    if isinstance(template, str):
        return _PARAMETER.sub(lambda m: str(_param(params, m[1])), template)
    return template


def application_set(name: str, elements: list[dict], template: dict, **spec) -> dict:
    """An ApplicationSet body with one list generator."""
    generators = [{"list": {"elements": elements}}]
    return body(
        API, "ApplicationSet", name, {"generators": generators, "template": template, **spec}
    )


def _param(params: dict, key: str):
    if key in params:
        return params[key]
    value = params
    for part in key.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def _copy_pointer(source: dict, target: dict, pointer: str) -> None:
    """Copy the value at JSON pointer from source into target (removing it if absent)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
    value, found = source, True
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            found = False
            break
    where = target
    for part in parts[:-1]:
        where = where.setdefault(part, {})
    if found:
        where[parts[-1]] = copy.deepcopy(value)
    else:
        where.pop(parts[-1], None)
