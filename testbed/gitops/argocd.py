"""Argo CD stand-in: the application controller, over real Applications (argoproj.io/v1alpha1).

What it does as Argo CD does (controller/appcontroller.go, controller/sync.go, state.go):
- Renders an Application's source from Git: `spec.source.repoURL` (a file:// URL),
  `path` and `targetRevision` (branch, tag or sha; empty means HEAD), resolved to a sha.
- Marks every object it applies with the tracking annotation
  `argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>` and applies it
  server-side, forcing conflicts, as field manager `argocd-controller` (Argo CD's
  ServerSideApply=true sync option), in `spec.destination.namespace` when it has none.
- Refresh: compares live objects with Git and writes `status.sync` (Synced/OutOfSync,
  revision, comparedTo), `status.resources[]` (per object sync and health),
  `status.health` (the worst resource health) and `status.reconciledAt`.
- Auto-sync while `spec.syncPolicy.automated` is set and `enabled` is not false: when
  OutOfSync and no operation runs, it sets `operation` (sync to the compared revision,
  `initiatedBy.automated: true`), once per new revision or source; for a revision already
  synced it only acts with `selfHeal`, no sooner than `self_heal_timeout` after the last
  operation finished, as a partial sync of the drifted resources
  (`autoHealAttemptsCount` + 1). A revision whose last sync failed is not retried.
- Executes `operation.sync` (its `revision` and `source` override the spec's, which is how
  a rollback to a `status.history[]` entry works): `status.operationState` goes Running
  then Succeeded (or Failed/Error with the message), with `operation`, `startedAt`,
  `finishedAt` and `syncResult{revision, source, resources[]}`; `operation` is cleared. A
  full (not partial, not dry-run) successful sync appends `status.history[]`: id one more
  than the last (from 0), revision = the sha, source, deployStartedAt, deployedAt and
  initiatedBy, keeping the last `spec.revisionHistoryLimit` (default 10) entries.
- Writes status with the object (Application has no status subresource), and sets an
  operation only against the resourceVersion it read, so a concurrent writer wins.

What it simplifies: it polls every `period` instead of watching; a source is a directory
of plain YAML (no Helm, Kustomize, plugins or multiple sources); "in sync" means every
field in Git has the same value live (no normalisation, `ignoreDifferences` unread);
health follows gitops-engine's rules for Deployments only, any other present object is
Healthy; no hooks, waves, pruning, retries, projects or clusters; the tracking name is
the Application's name; self-heal waits a fixed timeout, not a growing backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client

from testbed.gitops.cluster import Controller, body, compact, matches, now
from testbed.gitops.git import GitRepo

API = "argoproj.io/v1alpha1"
TRACKING = "argocd.argoproj.io/tracking-id"
MANAGER = "argocd-controller"
HISTORY_LIMIT = 10
# gitops-engine's order, best to worst: an application is as healthy as its worst resource.
HEALTH_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
WAITING = "Waiting for rollout to finish"


class ArgoCD(Controller):
    """The application controller for the Applications in `namespace` (all when None)."""

    name = "argocd-application-controller"

    def __init__(
        self,
        kubeconfig: Path,
        *,
        namespace: str | None = None,
        period: float = 0.3,
        self_heal_timeout: float = 2.0,
    ) -> None:
        super().__init__(kubeconfig, namespace=namespace, period=period)
        self.self_heal_timeout = self_heal_timeout

    def objects(self) -> list[dict]:
        return self.cluster.list(API, "Application", self.namespace)

    def reconcile(self, app: dict) -> None:
        if app.get("operation"):
            self._operate(app)  # the next pass refreshes against the new live state
            return
        compared = self._refresh(app)
        self._auto_sync(app, compared)

    def render(self, app: dict, source: dict, revision: str) -> tuple[str, list[dict]]:
        """The sha of `revision` and the source's objects at it, ready to apply."""
        repo = GitRepo.from_url(source["repoURL"])
        sha = repo.resolve(revision or source.get("targetRevision") or "HEAD")
        destination = app["spec"].get("destination", {}).get("namespace")
        objects = repo.manifests(sha, source.get("path", ""))
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            _, namespaced = self.cluster.resource(obj["apiVersion"], obj["kind"])
            if namespaced:
                meta.setdefault("namespace", destination or app["metadata"]["namespace"])
            meta.setdefault("annotations", {})[TRACKING] = tracking_id(app, obj)
        return sha, objects

    def _refresh(self, app: dict) -> dict:
        source = app["spec"]["source"]
        sha, desired = self.render(app, source, source.get("targetRevision", ""))
        resources = []
        for obj in desired:
            live = self.cluster.live(obj)
            health, message = resource_health(obj["kind"], live)
            entry = resource_ref(obj)
            entry["status"] = "Synced" if live and matches(obj, live) else "OutOfSync"
            entry["health"] = {"status": health, **({"message": message} if message else {})}
            resources.append(entry)
        out_of_sync = any(r["status"] != "Synced" for r in resources)
        healths = [r["health"]["status"] for r in resources]
        compared = compact(
            {
                "sync": {
                    "status": "OutOfSync" if out_of_sync else "Synced",
                    "revision": sha,
                    "comparedTo": {
                        "source": source,
                        "destination": app["spec"].get("destination", {}),
                    },
                },
                "resources": resources,
                "health": {"status": max(healths, key=HEALTH_ORDER.index, default="Healthy")},
            }
        )
        status = app.get("status") or {}
        if any(status.get(key) != value for key, value in compared.items()):
            self._write_status(app, {**compared, "reconciledAt": now()})
        return compared

    def _auto_sync(self, app: dict, compared: dict) -> None:
        automated = (app["spec"].get("syncPolicy") or {}).get("automated")
        if automated is None or automated.get("enabled") is False:
            return
        if compared["sync"]["status"] != "OutOfSync":
            return
        source, revision = app["spec"]["source"], compared["sync"]["revision"]
        sync = {"revision": revision, "source": source, "prune": bool(automated.get("prune"))}
        last = (app.get("status") or {}).get("operationState") or {}
        result = last.get("syncResult") or {}
        if result.get("revision") == revision and result.get("source") == source:
            # Already synced to this revision: only self-heal repairs drift, and not at once.
            if last.get("phase") != "Succeeded" or not automated.get("selfHeal"):
                return
            if _age(last.get("finishedAt")) < self.self_heal_timeout:
                return
            attempts = last["operation"]["sync"].get("autoHealAttemptsCount", 0)
            sync["autoHealAttemptsCount"] = attempts + 1
            sync["resources"] = [
                compact({"group": r.get("group", ""), "kind": r["kind"], "name": r["name"]})
                for r in compared["resources"]
                if r["status"] != "Synced"
            ]
        operation = {"sync": sync, "initiatedBy": {"automated": True}, "retry": {"limit": 5}}
        self.set_operation(app, operation)

    def set_operation(self, app: dict, operation: dict) -> bool:
        """Set `operation` on the Application as read (as Argo CD's SetAppOperation does);
        False when another writer changed it since, so that writer's operation stands."""
        patch = {
            "metadata": {"resourceVersion": app["metadata"]["resourceVersion"]},
            "operation": operation,
        }
        try:
            self.cluster.merge_patch(app, patch)
        except client.ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _operate(self, app: dict) -> None:
        operation = app["operation"]
        state = (app.get("status") or {}).get("operationState") or {}
        if state.get("phase") != "Running" or state.get("operation") != operation:
            state = {"operation": operation, "phase": "Running", "startedAt": now()}
            self._write_status(app, {"operationState": state})
        sync = operation.get("sync")
        if not sync:
            self._finish(app, state, "Error", "Operation unspecified")
            return
        source = sync.get("source") or app["spec"]["source"]
        try:
            sha, desired = self.render(app, source, sync.get("revision", ""))
        except Exception as error:  # Git could not produce the manifests
            self._finish(app, state, "Error", f"ComparisonError: {error}")
            return
        wanted = {(r.get("group", ""), r["kind"], r["name"]) for r in sync.get("resources", [])}
        results = []
        for obj in desired:
            ref = resource_ref(obj)
            if wanted and (ref["group"], ref["kind"], ref["name"]) not in wanted:
                continue
            try:
                if not sync.get("dryRun"):
                    self.cluster.apply(obj, MANAGER)
            except client.ApiException as error:
                results.append({**ref, "status": "SyncFailed", "message": error.body or str(error)})
                continue
            kind = ".".join(filter(None, (ref["kind"].lower(), ref["group"])))
            message = f"{kind}/{ref['name']} serverside-applied"
            results.append({**ref, "status": "Synced", "message": message, "syncPhase": "Sync"})
        result = {"revision": sha, "source": source, "resources": results}
        if any(r["status"] != "Synced" for r in results):
            self._finish(app, state, "Failed", "one or more objects failed to apply", result)
            return
        history = None
        if not wanted and not sync.get("dryRun"):
            history = _appended(app, sha, source, state["startedAt"], operation)
        message = "successfully synced (all tasks run)"
        self._finish(app, state, "Succeeded", message, result, history)

    def _finish(self, app, state, phase, message, result=None, history=None) -> None:
        """Record the operation's outcome and clear `operation`, in one write."""
        done = {**state, "phase": phase, "message": message, "finishedAt": now()}
        if result is not None:
            done["syncResult"] = result
        status = {"operationState": done}
        if history is not None:
            status["history"] = history
        self._write_status(app, status, clear_operation=True)

    def _write_status(self, app: dict, fields: dict, clear_operation: bool = False) -> None:
        """Replace status fields whole, as Argo CD's JSON patches do (a merge patch would
        blend a new operationState into the last one)."""
        ops = [] if app.get("status") else [{"op": "add", "path": "/status", "value": {}}]
        ops += [{"op": "add", "path": f"/status/{k}", "value": v} for k, v in fields.items()]
        if clear_operation:
            ops.append({"op": "add", "path": "/operation", "value": None})
        self.cluster.json_patch(app, ops)
        app.setdefault("status", {}).update(fields)  # later writes in this pass build on it


def tracking_id(app: dict, obj: dict) -> str:
    """Argo CD's annotation-tracking value for obj applied by app."""
    ref = resource_ref(obj)
    name = app["metadata"]["name"]
    return f"{name}:{ref['group']}/{ref['kind']}:{ref['namespace']}/{ref['name']}"


def resource_ref(obj: dict) -> dict:
    group, _, version = obj["apiVersion"].rpartition("/")
    meta = obj["metadata"]
    return {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
    }


def resource_health(kind: str, live: dict | None) -> tuple[str, str]:
    """gitops-engine's health of one live object, with its message."""
    if live is None:
        return "Missing", ""
    if kind != "Deployment":
        return "Healthy", ""
    spec, status = live["spec"], live.get("status") or {}
    if spec.get("paused"):
        return "Suspended", "Deployment is paused"
    if live["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return "Progressing", f"{WAITING}: observed deployment generation less than desired"
    for condition in status.get("conditions") or []:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            name = live["metadata"]["name"]
            return "Degraded", f"Deployment {name!r} has exceeded its progress deadline"
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total, available = status.get("replicas", 0), status.get("availableReplicas", 0)
    if updated < wanted:
        return "Progressing", f"{WAITING}: {updated} out of {wanted} new replicas updated..."
    if total > updated:
        return "Progressing", f"{WAITING}: {total - updated} old replicas pending termination..."
    if available < updated:
        return "Progressing", f"{WAITING}: {available} of {updated} updated replicas available..."
    return "Healthy", ""


def application(
    name: str,
    repo_url: str,
    *,
    path: str = "",
    revision: str = "HEAD",
    namespace: str,
    self_heal: bool | None = True,
) -> dict:
    """An Application body syncing `path` of `repo_url` into `namespace`; `self_heal=None`
    leaves auto-sync off, else automated sync is on with that selfHeal."""
    spec = {
        "project": "default",
        "source": compact({"repoURL": repo_url, "path": path, "targetRevision": revision}),
        "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
    }
    if self_heal is not None:
        spec["syncPolicy"] = {"automated": {"prune": False, "selfHeal": self_heal}}
    return body(API, "Application", name, spec)


def _appended(app: dict, sha: str, source: dict, started: str, operation: dict) -> list[dict]:
    history = list((app.get("status") or {}).get("history") or [])
    entry = {
        "id": history[-1]["id"] + 1 if history else 0,
        "revision": sha,
        "source": source,
        "deployStartedAt": started,
        "deployedAt": now(),
        "initiatedBy": operation.get("initiatedBy") or {},
    }
    limit = app["spec"].get("revisionHistoryLimit", HISTORY_LIMIT)
    return [*history, entry][-limit:] if limit else []


def _age(stamp: str | None) -> float:
    """Seconds since an RFC 3339 time (infinite when there is none)."""
    if not stamp:
        return float("inf")
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()
