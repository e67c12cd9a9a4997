"""Pre-flight: may this workload be reverted, and to which revision? Each check recorded.

Checks, in order: the workload exists; it is not paused in the cluster; it still runs the
bad revision; a known-good target exists within `max_depth` revisions ("never from broken
new to broken old"); and the schema marker did not move between the bad and target
revisions (the migration guard), unless a down-migration Job ran first and succeeded.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from config.owners import OwnersPolicy
from config.policy import DecisionDefaults, MigrationGuard
from core import owners
from core.integrations.kubernetes import Conflict, Kube, NotFound
from core.models import Workload
from core.owners import Claim
from core.records import Decision, Rollout
from core.revisions import parse_time
from core.store import Store
from workers.owners import Hand
from workers.revert import pod_template, revision_of

CHILD = {
    "Deployment": "ReplicaSet",
    "Rollout": "ReplicaSet",
    "StatefulSet": "ControllerRevision",
    "DaemonSet": "ControllerRevision",
}
# Decisions that got as far as blaming a revision: a target blamed so is not known good.
BLAMING = {
    "enqueued",
    "would_roll_back",
    "approval_required",
    "min_firing",
    "already_rolled_back",
    "paused",
    "cooldown",
    "circuit_open",
    "denied",
}


@dataclass
class Revisions:
    """A workload as the cluster has it: the object, its revisions, the current one."""

    owner: dict
    children: dict[str, dict]
    current: str | None

    def numbers(self) -> list[int]:
        return sorted(int(r) for r in self.children if r.isdigit())


@dataclass
class Preflight:
    """The outcome of pre-flight: a target, or the reason to block."""

    revisions: Revisions | None = None
    target: str | None = None
    blocked: str = ""
    # The tool that reconciles the workload, when its marks prove one (core/owners.py).
    owner: Claim | None = None
    # An Argo Rollout whose template its owner re-applies is aborted, never undone.
    abort_only: bool = False
    checks: dict = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks[name] = {"ok": ok, "detail": detail}
        return ok


def read_revisions(kube: Kube, workload: Workload) -> Revisions:
    """The workload object and its ReplicaSets or ControllerRevisions by revision."""
    owner = kube.get(workload.kind, workload.namespace, workload.name)
    children = {}
    for child in kube.owned(CHILD[workload.kind], owner):
        number = revision_of(workload.kind, child)
        if number:
            children[number] = child
    return Revisions(owner, children, _current(workload.kind, owner, children))


def _current(kind: str, owner: dict, children: dict[str, dict]) -> str | None:
    annotations = owner["metadata"].get("annotations") or {}
    if kind == "Deployment":
        return annotations.get("deployment.kubernetes.io/revision")
    if kind == "Rollout":
        return annotations.get("rollout.argoproj.io/revision")
    if kind == "StatefulSet":
        name = owner.get("status", {}).get("updateRevision")
        return next((r for r, c in children.items() if c["metadata"]["name"] == name), None)
    numbers = [int(r) for r in children if r.isdigit()]
    return str(max(numbers)) if numbers else None


@dataclass
class PreflightContext:
    """What pre-flight needs besides the cluster."""

    store: Store
    settings: DecisionDefaults
    now: datetime
    sleep: Callable[[float], None] = time.sleep
    owners: OwnersPolicy = field(default_factory=OwnersPolicy)
    # The hand for an owner kind, to confirm a mark against the owner's own objects.
    hand: Callable[[str], Hand | None] | None = None


def run_preflight(
    kube: Kube, ctx: PreflightContext, workload: Workload, decision: Decision, bad: str
) -> Preflight:
    """Every check in order; stop at the first that blocks."""
    result = Preflight()
    try:
        revisions = read_revisions(kube, workload)
    except NotFound:
        result.check("exists", False, "the workload no longer exists")
        result.blocked = "workload_missing"
        return result
    result.revisions = revisions
    result.check("exists", True, f"{workload.kind} found")
    if revisions.owner.get("spec", {}).get("paused"):
        result.check("not_paused", False, "spec.paused is true: someone paused the rollout")
        result.blocked = "paused_in_cluster"
        return result
    result.check("not_paused", True, "not paused")
    if revisions.current != bad:
        result.check(
            "still_bad", False, f"current revision is {revisions.current}, not the bad {bad}"
        )
        result.blocked = "moved_on"
        return result
    result.check("still_bad", True, f"revision {bad} is live")
    if not _owner_allows(ctx, workload, revisions, result):
        result.blocked = "owner_not_frozen"
        return result
    target = _known_good_target(ctx, workload, revisions, bad, result)
    if target is None:
        result.blocked = "no_known_good_revision"
        return result
    result.target = target
    if not _migration_allows(kube, ctx, workload, revisions, bad, target, result):
        result.blocked = "migration_guard"
    return result


def _owner_allows(
    ctx: PreflightContext, workload: Workload, revisions: Revisions, result: Preflight
) -> bool:
    """Who else writes this workload, and may Backstop go through it? A workload that Argo
    CD, Flux or Helm reconciles gets its template back from that owner within seconds to
    minutes, so the rollback goes through the owner (frozen first, workers/owners/); an
    owner kind the policy switches off blocks it (paged). An Argo Rollout's abort lives in
    its status, which no owner re-applies, so such a Rollout is aborted and never undone."""
    metadata = revisions.owner.get("metadata", {})
    marks = owners.claims(metadata, workload, argocd_namespace=ctx.owners.argocd.namespace)
    # A mark of a kind switched off is not checked against that owner's objects (Backstop
    # may lack the rights); once confirmed, a mark is recorded as proven.
    certain = next((c for c in marks if c.certain), None)
    owner = certain or next(
        (
            replace(c, certain=True)
            for c in marks
            if ctx.owners.allows(c.kind) and _confirmed(ctx, c, workload)
        ),
        None,
    )
    if owner is None:
        unchecked = [c for c in marks if c.kind == "helm" and not ctx.owners.allows("helm")]
        if unchecked:
            # Helm's annotations are most often a live release's, and a revert behind a
            # live release is undone by its next upgrade: unchecked, they block.
            result.owner = unchecked[0]
            detail = f"{_named(unchecked[0])} may own this workload; owners.helm.enabled is off"
            return result.check("owner", False, detail)
        unproven = ", ".join(f"{c.kind} {c.namespace}/{c.name} ({c.found_by})" for c in marks)
        detail = "no owner's mark proves one" + (f"; unconfirmed: {unproven}" if marks else "")
        return result.check("owner", True, detail)
    result.owner = owner
    named = _named(owner)
    if workload.kind == "Rollout" and owner.kind == "argocd":
        result.abort_only = True
        return result.check("owner", True, f"{named}: the Rollout is aborted, not undone")
    if not ctx.owners.allows(owner.kind):
        detail = f"{named} reconciles this workload, and owners.{owner.kind}.enabled is off"
        return result.check("owner", False, detail)
    if ctx.hand is None or ctx.hand(owner.kind) is None:
        detail = f"{named} reconciles this workload; Backstop cannot roll back through it"
        return result.check("owner", False, detail)
    if owner is certain and not _confirmed(ctx, owner, workload):
        # The mark is sure, the owner's objects are not found: a wrong owners.*.namespace,
        # or an owner being deleted. Reverting behind a live owner is worse than waiting.
        detail = f"{named} is named by the workload's mark, but not found holding it"
        return result.check("owner", False, detail)
    return result.check("owner", True, f"{named}: rolled back through it, frozen first")


def _named(claim: Claim) -> str:
    return f"{claim.kind} {claim.namespace}/{claim.name} (found by {claim.found_by})"


def _confirmed(ctx: PreflightContext, claim: Claim, workload: Workload) -> bool:
    """Do the owner's own objects hold the workload? (With no way to ask, a certain mark
    counts as proof.)"""
    hand = ctx.hand(claim.kind) if ctx.hand is not None else None
    return hand.confirm(claim, workload) if hand is not None else claim.certain


def _known_good_target(
    ctx: PreflightContext, workload: Workload, revisions: Revisions, bad: str, result: Preflight
) -> str | None:
    """Walk back from the revision before `bad` to the first known-good one."""
    history = {r.revision: r for r in ctx.store.rollouts.for_workload(workload) if r.revision}
    blamed = _blamed_revisions(ctx.store, workload)
    older = [n for n in reversed(revisions.numbers()) if n < int(bad)]
    verdicts = []
    for number in older[: ctx.settings.max_depth]:
        revision = str(number)
        live = _live_for(revision, revisions, history, ctx.now)
        problem = None
        if revision in blamed:
            problem = f"a kill-switch alert was blamed on it (decision {blamed[revision]})"
        elif live is None or live < ctx.settings.known_good_min_age:
            shown = "unknown" if live is None else f"{int(live.total_seconds())}s"
            problem = f"live for {shown}, less than known_good_min_age"
        verdicts.append({"revision": revision, "ok": problem is None, "why": problem or "good"})
        if problem is None:
            result.check("known_good", True, f"revision {revision} was live and healthy")
            result.checks["known_good"]["walked"] = verdicts
            return revision
    detail = (
        "no earlier revision exists"
        if not older
        else f"none of the last {len(verdicts)} revisions is known good"
    )
    result.check("known_good", False, detail)
    result.checks["known_good"]["walked"] = verdicts
    return None


def _blamed_revisions(store: Store, workload: Workload) -> dict[str, str]:
    blamed: dict[str, str] = {}
    for decision in store.decisions.recent(workload=workload.key, limit=1000):
        if decision.rollout and decision.rollout.revision and decision.reason in BLAMING:
            blamed.setdefault(decision.rollout.revision, decision.id)
    return blamed


def started_at(revision: str, revisions: Revisions, history: dict[str, Rollout]) -> datetime | None:
    """When `revision` went live: Backstop's record of its rollout, else the creation of its
    ReplicaSet (or ControllerRevision); None when neither is known."""
    if revision in history:
        return history[revision].started_at
    child = revisions.children.get(revision)
    return parse_time(child["metadata"].get("creationTimestamp")) if child else None


def _live_for(
    revision: str, revisions: Revisions, history: dict[str, Rollout], now: datetime
) -> timedelta | None:
    """How long `revision` was the live one: from its start to the next revision's start."""
    start = started_at(revision, revisions, history)
    if start is None:
        return None
    later = [n for n in revisions.numbers() if n > int(revision)]
    end = started_at(str(min(later)), revisions, history) if later else now
    return (end or now) - start


def _marker(guard: MigrationGuard, template: dict) -> str | None:
    meta = template.get("metadata", {})
    if guard.annotation and guard.annotation in (meta.get("annotations") or {}):
        return meta["annotations"][guard.annotation]
    if guard.label and guard.label in (meta.get("labels") or {}):
        return meta["labels"][guard.label]
    return None


def _migration_allows(
    kube: Kube,
    ctx: PreflightContext,
    workload: Workload,
    revisions: Revisions,
    bad: str,
    target: str,
    result: Preflight,
) -> bool:
    guard = ctx.settings.migration_guard
    kind = workload.kind
    before = _marker(guard, pod_template(kind, revisions.children[target]))
    after = _marker(guard, pod_template(kind, revisions.children[bad]))
    if before == after:
        return result.check("migration", True, f"schema marker unchanged ({after or 'none'})")
    cronjob = guard.down_migration_cronjob
    if cronjob is None:
        return result.check(
            "migration",
            False,
            f"schema moved from {before} to {after}: reverting code would run "
            "it against a newer schema; no down-migration is configured",
        )
    ok, detail = _down_migrate(kube, ctx, workload, guard, cronjob, before, after)
    return result.check("migration", ok, detail)


def _down_migrate(
    kube: Kube,
    ctx: PreflightContext,
    workload: Workload,
    guard: MigrationGuard,
    cronjob: str,
    before: str | None,
    after: str | None,
) -> tuple[bool, str]:
    """Run the down-migration Job from the template of `cronjob` (the guard's) and wait."""
    cron = kube.get("CronJob", workload.namespace, cronjob)
    digest = hashlib.blake2b(f"{workload.key}|{after}|{before}".encode(), digest_size=4).hexdigest()
    name = f"backstop-down-migration-{digest}"
    template = cron["spec"]["jobTemplate"]
    env = [
        {"name": "BACKSTOP_FROM_SCHEMA", "value": after or ""},
        {"name": "BACKSTOP_TO_SCHEMA", "value": before or ""},
    ]
    for container in template["spec"]["template"]["spec"].get("containers", []):
        container["env"] = [*container.get("env", []), *env]
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "backstop"}},
        "spec": template["spec"],
    }
    try:
        kube.create_job(workload.namespace, body)
    except Conflict:
        pass  # created by an earlier attempt of this rollback: wait for it
    deadline = ctx.now + guard.down_migration_timeout
    clock = ctx.now
    while clock < deadline:
        status = kube.get("Job", workload.namespace, name).get("status", {})
        if status.get("succeeded"):
            return True, f"down-migration Job {name} succeeded ({after} -> {before})"
        if any(
            c.get("type") == "Failed" and c.get("status") == "True"
            for c in status.get("conditions", [])
        ):
            return False, f"down-migration Job {name} failed"
        ctx.sleep(2)
        clock += timedelta(seconds=2)
    return False, f"down-migration Job {name} did not finish within the timeout"
