"""The rollback job's body: lock → pre-flight → evidence → (judgment) → (owner) → revert → verify.

Each step is recorded with its timing in the Rollback record, which doubles as a
checkpoint: a re-run after a crash skips what is done, and detects a revert that an
earlier attempt applied but did not record, so a workload is never reverted twice.
Transient errors propagate (RQ retries the job); a permanent error fails the rollback.
"""

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from config.policy import DecisionDefaults, Policy
from core import testpoints
from core.changes import ReadConfigMap, what_changed
from core.errors import PermanentError, TransientError
from core.integrations.kubernetes import Conflict, Kube, NotFound
from core.integrations.objects import Objects
from core.integrations.prometheus import Prometheus
from core.models import Workload
from core.queues import RollbackRequest
from core.records import (
    Decision,
    OwnerRecord,
    Rollback,
    WorkloadRecord,
)
from core.store import Store
from workers.evidence import capture, events_read_ahead, late_events
from workers.judgmentstep import JudgmentStep
from workers.owners import Hand, Situation, Unfreezable
from workers.owners.registry import freeze_owner, hand_for
from workers.preflight import PreflightContext, run_preflight
from workers.revert import Patch, pod_template, revert_patches, template_hash
from workers.reverted import applied_earlier, record_created_revision, still_reverted
from workers.verification import Waiting, verify_kpis, wait_for_rollout

log = logging.getLogger("backstop.rollback")

LOCK_TTL = timedelta(minutes=2)
CONFLICT_ATTEMPTS = 3
RESOURCE_VERSION = "/metadata/resourceVersion"


def config_map_reader(cluster: Kube, namespace: str) -> ReadConfigMap:
    """Reads a ConfigMap of the workload's namespace for the diff; None when not found."""

    def read(name: str) -> dict | None:
        try:
            return cluster.get("ConfigMap", namespace, name)
        except NotFound:
            return None

    return read


def bad_rollout_began(decision: Decision, rollback: Rollback) -> datetime | None:
    """When the rollout of the revision being reverted began, if the decision knows it."""
    rollout = decision.rollout
    return rollout.started_at if rollout and rollout.revision == rollback.bad_revision else None


class LockLost(TransientError):
    """Another rollback holds the workload, or our lock expired while we stalled."""


@dataclass
class Executor(JudgmentStep):
    """Runs one rollback against one cluster."""

    store: Store
    policy: Policy
    kube: Kube | None
    prometheus: Prometheus | None
    connection: redis.Redis
    clock: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    # Why kube is None (an unknown or unreachable cluster), recorded as the failure reason.
    kube_unavailable: str | None = None
    _token: str = ""

    def _record(self, request: RollbackRequest) -> Rollback:
        """The rollback's record: stored, or new."""
        return self.store.rollbacks.get(request.id) or Rollback(
            id=request.id,
            decision_id=request.decision_id,
            workload=WorkloadRecord.of(request.workload),
            bad_revision=request.bad_revision,
            mode=request.mode,
            created_at=self.clock(),
        )

    def fail(self, request: RollbackRequest, *, reason: str) -> Rollback:
        """End a rollback as failed (a permanent error, or retries exhausted)."""
        rollback = self._record(request)
        if rollback.terminal:
            return rollback
        return self.finish(rollback, "failed", reason)

    def run(self, request: RollbackRequest) -> Rollback:
        """Run (or resume) a rollback; returns its record."""
        workload, rollback = request.workload, self._record(request)
        if rollback.terminal:
            return rollback
        rollback.attempts += 1
        self.store.rollbacks.save(rollback)
        if self.kube is None:
            return self.finish(
                rollback,
                "failed",
                self.kube_unavailable
                or "no Kubernetes configured: set KUBECONFIG or run Backstop in the cluster",
            )
        decision = self.store.decisions.get(request.decision_id)
        if decision is None:
            return self.finish(rollback, "failed", f"decision {request.decision_id} not found")
        settings = self.policy.timing(self.policy.service_for(decision.labels))
        started = self.clock()
        self._token = f"{request.id}:{uuid.uuid4().hex}"
        if not self.store.rollbacks.lock(workload.key, request.id, self._token, LOCK_TTL):
            raise LockLost(f"{workload.key} is locked by another rollback")
        try:
            self._step(rollback, "lock", "ok", started, f"holding {workload.key}")
            testpoints.reached("after_lock")
            return self._proceed(rollback, decision, workload, settings)
        finally:
            self.store.rollbacks.unlock(workload.key, self._token)

    # -- the steps -------------------------------------------------------------------------

    def _proceed(
        self, rollback: Rollback, decision: Decision, workload: Workload, settings: DecisionDefaults
    ) -> Rollback:
        reverted = rollback.step("revert")
        if reverted is None or reverted.status != "ok":
            outcome = self._revert_with_retries(rollback, decision, workload, settings)
            if outcome is not None:
                return outcome
        evidence = self.store.rollbacks.evidence(rollback.id)
        if evidence and late_events(self.cluster, workload.namespace, evidence):
            self.store.rollbacks.save_evidence(rollback.id, evidence)
        waiting = Waiting(self.clock, self.sleep, self._heartbeat(workload))
        rolled_out = rollback.step("rollout")
        if rolled_out is None or rolled_out.status != "ok":
            started = self.clock()
            testpoints.reached("during_wait")
            complete, data = wait_for_rollout(
                self.cluster,
                workload,
                timeout=settings.rollout_timeout,
                waiting=waiting,
                aborted=rollback.aborted_only,
            )
            rollback.created_revision = (
                record_created_revision(
                    self.cluster, self.store, workload, rollback, self.clock(), self.policy.watch
                )
                or rollback.created_revision
            )
            if not complete:
                self._step(
                    rollback,
                    "rollout",
                    "failed",
                    started,
                    "the reverted version did not become ready in time",
                    **data,
                )
                return self._freeze(rollback, workload, "rollout_incomplete")
            self._step(
                rollback,
                "rollout",
                "ok",
                started,
                "aborted: back on the stable pods"
                if rollback.aborted_only
                else f"revision {rollback.created_revision} is rolled out",
                **data,
            )
        started = self.clock()
        testpoints.reached("during_verification")
        result = verify_kpis(
            self.prometheus,
            settings.verify,
            waiting=waiting,
            resolved=lambda: self._episode_resolved(decision),
        )
        rollback.verification = result
        if result["held"] is False:
            self._step(rollback, "verify", "failed", started, result["detail"])
            return self._freeze(rollback, workload, "kpis_not_recovered")
        if not rollback.aborted_only and not still_reverted(self.cluster, self.store, workload):
            detail = "another writer put a template back since the revert (an owner's reconcile?)"
            self._step(rollback, "verify", "failed", started, detail)
            return self._freeze(rollback, workload, "reverted_by_other")
        self._step(rollback, "verify", "ok", started, result["detail"])
        reason = "kpis_recovered" if result["held"] else "rollout_healthy_only"
        return self.finish(rollback, "verified", reason)

    def _revert_with_retries(
        self, rollback: Rollback, decision: Decision, workload: Workload, settings: DecisionDefaults
    ) -> Rollback | None:
        """Revert; on a 409 (the object changed since we read it, often only its status),
        start again from pre-flight on a fresh read. RQ retries what still conflicts."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return self._revert(rollback, decision, workload, settings)
            except Conflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                self.sleep(0.2 * attempt)
        return None

    def _revert(
        self, rollback: Rollback, decision: Decision, workload: Workload, settings: DecisionDefaults
    ) -> Rollback | None:
        """Pre-flight, evidence and the patch; a Rollback when it ends here, else None."""
        # The evidence's events are read while pre-flight runs: they depend on neither.
        wanted = rollback.step("evidence") is None
        with events_read_ahead(self.cluster, workload.namespace, wanted=wanted) as events:
            return self._revert_checked(rollback, decision, workload, settings, events)

    def _revert_checked(
        self,
        rollback: Rollback,
        decision: Decision,
        workload: Workload,
        settings: DecisionDefaults,
        events: Future | None,
    ) -> Rollback | None:
        started = self.clock()
        context = PreflightContext(
            self.store, settings, started, self.sleep, self.policy.owners, self._hand
        )
        check = run_preflight(self.cluster, context, workload, decision, rollback.bad_revision)
        rollback.preflight = check.checks
        # A re-run's pre-flight may stop before the owner check: the first one's stays.
        rollback.owner = OwnerRecord.of(check.owner) if check.owner else rollback.owner
        if check.blocked:
            if applied_earlier(self.store, rollback, workload, check.revisions):
                detail = "an earlier attempt applied the revert before it stopped"
                recorded = self._owner_record(rollback, workload)
                self._step(
                    rollback, "revert", "ok", started, "; ".join(filter(None, [detail, recorded]))
                )
                self._announce(rollback, "started")  # unless that attempt told it already
                return None
            self._step(rollback, "preflight", "blocked", started, check.blocked)
            return self.finish(rollback, "blocked", check.blocked)
        revisions, target = check.revisions, check.target
        if revisions is None or target is None:
            raise PermanentError("pre-flight neither blocked nor chose a target (a bug)")
        rollback.target_revision = target
        self._step(
            rollback, "preflight", "ok", started, f"revert {rollback.bad_revision} -> {target}"
        )
        if rollback.step("evidence") is None:
            started = self.clock()
            bad_child = revisions.children[rollback.bad_revision]
            evidence = capture(self.cluster, workload, revisions.owner, bad_child, events)
            target_template = pod_template(workload.kind, revisions.children[target])
            evidence["changes"] = what_changed(
                target_template,
                pod_template(workload.kind, bad_child),
                read_config_map=config_map_reader(self.cluster, workload.namespace),
                rolled_out_at=bad_rollout_began(decision, rollback),
            )
            self.store.rollbacks.save_evidence(rollback.id, evidence)
            self._step(
                rollback,
                "evidence",
                "ok",
                started,
                f"{len(evidence['pods'])} pods, "
                + (
                    "events after the revert"
                    if "events_pending" in evidence
                    else f"{len(evidence['events'])} events"
                ),
            )
            testpoints.reached("after_evidence")
        stopped = self._judge(rollback, decision, workload, revisions, target)
        if stopped is not None:
            return stopped
        undo = settings.argo_undo and not check.abort_only
        rollback.aborted_only = workload.kind == "Rollout" and not undo
        patches = revert_patches(workload.kind, revisions.owner, revisions.children[target], undo)
        rollback.patch_type = ",".join(p.patch_type for p in patches)
        rollback.patch = [p.body for p in patches] if len(patches) > 1 else patches[0].body
        claim = check.owner if check.owner is not None and not check.abort_only else None
        hand = self._hand(claim.kind) if claim is not None else None
        started = self.clock()
        if rollback.mode == "dry-run":
            through = (
                f"; would freeze {claim.kind} {claim.namespace}/{claim.name} first" if claim else ""
            )
            detail = f"dry-run: patch recorded, not sent{through}"
            self._step(rollback, "revert", "skipped", started, detail)
            return self.finish(rollback, "dry_run", "dry_run")
        if hand is not None and claim is not None:
            try:
                detail = freeze_owner(self.store, self.connection, hand, claim, workload, rollback)
            except Unfreezable as exc:
                self._step(rollback, "owner", "blocked", started, str(exc))
                return self.finish(rollback, "blocked", "owner_not_frozen")
            self._step(rollback, "owner", "ok", started, detail)
            # A freeze may mark the workload itself (Flux's `reconcile: disabled`): the
            # revert is made against the workload as it is now, its marks kept.
            live = self.cluster.get(workload.kind, workload.namespace, workload.name)
            patches = revert_patches(workload.kind, live, revisions.children[target], undo)
        started = self.clock()
        self.store.rollouts.expect_rollback(
            workload,
            bad_revision=rollback.bad_revision,
            decision_id=decision.id,
            template_hash=template_hash(workload.kind, revisions.children[target]),
        )
        if hand is not None and claim is not None and hand.reverts:
            detail = hand.revert(claim, workload, rollback, target)
        else:
            self._apply(workload, patches)
            detail = f"{workload.kind} reverted to revision {target}"
            if hand is not None and claim is not None:
                detail = "; ".join(
                    filter(None, [detail, hand.recorded(claim, workload, rollback, target)])
                )
        testpoints.reached("after_patch")
        self._step(rollback, "revert", "ok", started, detail)
        self._announce(rollback, "started")  # after the PATCH: chat never delays it
        return None

    def _owner_record(self, rollback: Rollback, workload: Workload) -> str:
        """After a revert an earlier attempt applied but did not record: the owner's own
        record of it (Helm's release N+1), which that attempt may not have written."""
        owner, target = rollback.owner, rollback.target_revision
        hand = self._hand(owner.kind) if owner and target and not rollback.aborted_only else None
        if owner is None or hand is None or hand.reverts or target is None:
            return ""
        return hand.recorded(owner.claim(), workload, rollback, target)

    def _hand(self, kind: str) -> Hand | None:
        """The hand that acts through an owner of `kind` on this cluster."""
        objects = Objects(self.cluster.api)
        situation = Situation(
            self.cluster, objects, self.store, self.policy.owners, self.clock, self.sleep
        )
        return hand_for(kind, situation)

    def _apply(self, workload: Workload, patches: list[Patch]) -> None:
        """Send the patches in order. A later patch carries the resourceVersion the earlier
        one produced (Argo's abort changes it), so only outside changes conflict."""
        version = None
        for patch in patches:
            body = patch.body
            if version and isinstance(body, list) and body[0]["path"] == RESOURCE_VERSION:
                body = [{**body[0], "value": version}, *body[1:]]
            result = self.cluster.patch(
                workload.kind,
                workload.namespace,
                workload.name,
                body,
                patch_type=patch.patch_type,
                status=patch.status,
            )
            version = result["metadata"]["resourceVersion"]

    def _episode_resolved(self, decision: Decision) -> bool:
        episode = self.store.episodes.episode(decision.episode_id)
        return episode is not None and episode.status == "resolved"

    # -- access ----------------------------------------------------------------------------

    @property
    def cluster(self) -> Kube:
        """The cluster's client; `run` ends a rollback before any step when there is none."""
        if self.kube is None:
            raise PermanentError(self.kube_unavailable or "no Kubernetes configured")
        return self.kube

    def _heartbeat(self, workload: Workload):
        def beat() -> None:
            if not self.store.rollbacks.extend(workload.key, self._token, LOCK_TTL):
                raise LockLost(f"lost the lock on {workload.key} while waiting")

        return beat
