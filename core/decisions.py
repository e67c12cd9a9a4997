"""Decisions: for each alert episode, whether to roll back, with a recorded reason.

The order of checks (each a possible outcome, first match wins):

1. the alert is not a kill switch                     → skipped: not_kill_switch
2. it names no workload                               → skipped: no_workload
   its cluster is not one Backstop guards             → skipped: unknown_cluster
3. no rollout in the lookback window                  → skipped: no_recent_deployment
   the episode began before the latest rollout        → skipped: predates_deployment
   several rollouts in the window                     → skipped: ambiguous
   only the workload's creation in the window         → skipped: first_revision
   the rollout is Backstop's own rollback             → skipped: rollback_of_rollback
4. that revision is already (being) rolled back       → skipped: already_rolled_back
5. automation is paused (globally or this workload)   → skipped: paused
6. the episode is younger than min_firing             → deferred (re-checked later)
7. the workload is in its cooldown                    → skipped: cooldown
8. the circuit breaker is open                        → skipped: circuit_open
9. mode dry-run → dry_run; approve → awaiting_approval; enforce → rollback (enqueued)

Any other exception while deciding one episode → skipped: internal_error, which always
pages (core/intake.py decides each episode of a batch on its own).

In enforce mode, 4, 5, 7 and 8 are checked again atomically with claiming the rollback
(core/store/claim.lua), so concurrent receivers can never both roll back.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from config.durations import format_duration
from config.policy import Policy, ServicePolicy, matches
from core import logs, paging, queues, testpoints
from core.correlation import correlate, workload_for
from core.records import AuditEntry, Decision, DecisionStep, Rollback, WorkloadRecord
from core.store import Store
from core.vocabulary import explain

# What each correlation status (core.correlation.Status) means when it is not a match.
CORRELATION_REASONS = {
    "none": "no_recent_deployment",
    "predates": "predates_deployment",
    "ambiguous": "ambiguous",
    "first_revision": "first_revision",
}
# Reasons that page a human whatever incidents.pagerduty.page_decisions says: a bug must
# never stay silent.
ALWAYS_PAGE = frozenset({"internal_error"})


log = logging.getLogger("backstop.decisions")

TIMING_FIELDS = ("min_firing", "lookback", "clock_skew", "cooldown")


class DecisionError(Exception):
    """An on-call action that does not apply (unknown decision, wrong state)."""


class UnknownRollback(DecisionError):
    """An on-call action names a rollback that does not exist."""


RETRYABLE = ("blocked", "failed", "verification_failed")


@dataclass
class Engine:
    """Decides about episodes; records every decision; enqueues what it decides to do."""

    store: Store
    policy: Policy
    connection: redis.Redis
    clock: Callable[[], datetime]

    # -- entry points ----------------------------------------------------------------------

    def on_firing(self, *, episode_id: str, labels: dict[str, str], starts_at: datetime):
        """Decide about a newly firing episode."""
        now = self.clock()
        return self._evaluate(_new_decision(episode_id, labels, starts_at, now), now)

    def on_resolved(self, *, episode_id: str, labels: dict[str, str], starts_at: datetime):
        """An episode resolved: close a deferred decision, or record one if none exists."""
        decision = self.store.decisions.get(episode_id)
        if decision is not None and decision.outcome != "deferred":
            return decision
        now = self.clock()
        if decision is None:
            decision = _new_decision(episode_id, labels, starts_at, now)
        return self._finish(decision, now, "skipped", "resolved")

    def on_failure(
        self, *, episode_id: str, labels: dict[str, str], starts_at: datetime, error: Exception
    ) -> Decision:
        """Record that deciding about an episode raised: skipped, internal_error, paged."""
        now = self.clock()
        decision = _new_decision(episode_id, labels, starts_at, now)
        decision.mode = self.policy.mode
        # The exception's type only: its message may quote anything (a URL, a credential).
        decision.evidence = {"error": type(error).__name__}
        return self._finish(decision, now, "skipped", "internal_error")

    def recheck(self, episode_id: str):
        """Re-evaluate a deferred episode at startsAt + min_firing, unless it resolved."""
        decision = self.store.decisions.get(episode_id)
        if decision is None or decision.outcome != "deferred":
            return decision
        now = self.clock()
        episode = self.store.episodes.episode(episode_id)
        if episode is None or episode.status == "resolved":
            return self._finish(decision, now, "skipped", "resolved")
        return self._evaluate(decision, now)

    def approve(self, decision_id: str, *, actor: str, reason: str = "") -> Decision:
        """A human approves an awaiting rollback: claim it (bypassing pause, cooldown and
        breaker, but still counted by the breaker) and enqueue it."""
        decision = self._awaiting(decision_id)
        now = self.clock()
        workload = decision.workload.workload()
        bad = _bad_revision(decision)
        skip = self.store.automation.claim_rollback(
            workload=workload,
            revision=bad,
            decision_id=decision.id,
            now=now,
            cooldown=self.policy.timing(self.policy.service_for(decision.labels)).cooldown,
            max_rollbacks=self.policy.circuit_breaker.max_rollbacks,
            window=self.policy.circuit_breaker.window,
            force=True,
        )
        self._audit(actor, "approve", decision, reason)
        if skip is not None:
            return self._finish(decision, now, "skipped", skip, by=actor)
        return self._enqueue(decision, now, by=actor)

    def deny(self, decision_id: str, *, actor: str, reason: str = "") -> Decision:
        """A human denies an awaiting rollback."""
        decision = self._awaiting(decision_id)
        self._audit(actor, "deny", decision, reason)
        return self._finish(decision, self.clock(), "skipped", "denied", by=actor)

    def retry_rollback(self, rollback_id: str, *, actor: str) -> Rollback:
        """A human runs a blocked, failed or verification-failed rollback again."""
        found = self.store.rollbacks.get(rollback_id)
        if found is None:
            raise UnknownRollback(f"no rollback {rollback_id}")
        if found.status not in RETRYABLE:
            raise DecisionError(
                f"rollback {rollback_id} is {found.status}; only "
                f"{', '.join(RETRYABLE)} rollbacks can be retried"
            )
        found.status, found.reason, found.finished_at = "running", f"retried by {actor}", None
        self.store.rollbacks.save(found)
        queues.retry_rollback(
            self.connection,
            rollback_id,
            {
                "decision_id": found.decision_id,
                "workload": found.workload.workload().key,
                "bad_revision": found.bad_revision,
                "mode": found.mode,
            },
        )
        return found

    # -- the rules -------------------------------------------------------------------------

    def _evaluate(self, decision: Decision, now: datetime) -> Decision:
        labels = decision.labels
        service = self.policy.service_for(labels)
        timing = self.policy.timing(service)
        decision.mode = self.policy.mode
        decision.policy = {
            "service": service.name if service else None,
            "mode": self.policy.mode,
            **{name: format_duration(getattr(timing, name)) for name in TIMING_FIELDS},
            "circuit_breaker": {
                "max_rollbacks": self.policy.circuit_breaker.max_rollbacks,
                "window": format_duration(self.policy.circuit_breaker.window),
            },
        }
        if not is_kill_switch(self.policy, labels, service):
            return self._finish(decision, now, "skipped", "not_kill_switch")
        workload = workload_for(labels, self.policy, service)
        if workload is None:
            return self._finish(decision, now, "skipped", "no_workload")
        decision.workload = WorkloadRecord.of(workload)
        if workload.cluster not in self.policy.guarded_clusters():
            # Never guess: the same namespace/name may exist in a cluster we do guard.
            return self._finish(decision, now, "skipped", "unknown_cluster")

        found = correlate(decision.starts_at, self.store.rollouts.for_workload(workload), timing)
        decision.evidence, decision.confidence = found.evidence, found.confidence
        if found.status != "match":
            return self._finish(decision, now, "skipped", CORRELATION_REASONS[found.status])
        decision.rollout = found.rollout
        if found.rollout.by_backstop:
            return self._finish(decision, now, "skipped", "rollback_of_rollback")

        automation = self.store.automation
        claimed_by = automation.claimed(workload, _bad_revision(decision))
        if claimed_by is not None and claimed_by != decision.id:
            return self._finish(decision, now, "skipped", "already_rolled_back")
        if automation.paused(workload) is not None:
            return self._finish(decision, now, "skipped", "paused")
        if claimed_by == decision.id:
            # This decision claimed the rollback, then its receiver died (or Redis went away)
            # before the job was enqueued: finish what it started. The unique job id keeps it
            # to one job; the cooldown and breaker its own claim set must not stop it.
            return self._enqueue(decision, now)
        due = decision.starts_at + timing.min_firing
        if now < due:
            decision.recheck_at = due
            queues.schedule_recheck(self.connection, episode_id=decision.episode_id, at=due)
            return self._finish(decision, now, "deferred", "min_firing")
        breaker = self.policy.circuit_breaker
        held = None
        if automation.cooldown_left(workload, now=now, cooldown=timing.cooldown):
            held = "cooldown"
        elif automation.circuit(now=now, window=breaker.window)["state"] == "open":
            held = "circuit_open"
        if held is not None:
            # A concurrent receiver may have claimed this very rollback since the claim was
            # read above, setting the cooldown (or tripping the breaker) as it did: then the
            # claim is why nothing happens here, as claim.lua, which checks it first, says.
            if automation.claimed(workload, _bad_revision(decision)) not in (None, decision.id):
                held = "already_rolled_back"
            return self._finish(decision, now, "skipped", held)

        if self.policy.mode == "dry-run":
            # The dry-run job runs pre-flight and records the exact patch; it changes nothing.
            decision.job_id = queues.enqueue_rollback(
                self.connection,
                decision_id=decision.id,
                workload=workload,
                bad_revision=_bad_revision(decision),
                mode="dry-run",
            )
            return self._finish(decision, now, "dry_run", "would_roll_back")
        if self.policy.mode == "approve":
            return self._finish(decision, now, "awaiting_approval", "approval_required")
        skip = automation.claim_rollback(
            workload=workload,
            revision=_bad_revision(decision),
            decision_id=decision.id,
            now=now,
            cooldown=timing.cooldown,
            max_rollbacks=breaker.max_rollbacks,
            window=breaker.window,
        )
        if skip is not None:
            return self._finish(decision, now, "skipped", skip)
        testpoints.reached("after_claim")
        return self._enqueue(decision, now)

    # -- recording -------------------------------------------------------------------------

    def _enqueue(self, decision: Decision, now: datetime, by: str = "backstop") -> Decision:
        # The claim is ours (keyed by this decision's id, which is the episode's), so a retry
        # after a failure here re-enqueues; the unique job id keeps it to one job.
        decision.job_id = queues.enqueue_rollback(
            self.connection,
            decision_id=decision.id,
            workload=decision.workload.workload(),
            bad_revision=_bad_revision(decision),
        )
        return self._finish(decision, now, "rollback", "enqueued", by=by)

    def _finish(
        self, decision: Decision, now: datetime, outcome: str, reason: str, by: str = "backstop"
    ) -> Decision:
        decision.outcome, decision.reason = outcome, reason
        decision.detail = _detail(decision)
        decision.updated_at = now
        decision.history.append(DecisionStep(at=now, outcome=outcome, reason=reason, by=by))
        self.store.decisions.save(decision)
        if outcome == "skipped" and (
            reason in ALWAYS_PAGE or reason in self.policy.incidents.pagerduty.page_decisions
        ):
            paging.request_page(self.store, self.connection, self.policy, decision, now)
        fields = {
            "decision_id": decision.id,
            "outcome": outcome,
            "reason": reason,
            "workload": decision.summary()["workload"],
            "by": by,
        }
        if decision.job_id:
            fields["job"] = decision.job_id
        log.info("decision %s: %s", outcome, reason, extra={"fields": fields})
        return decision

    def _awaiting(self, decision_id: str) -> Decision:
        decision = self.store.decisions.get(decision_id)
        if decision is None:
            raise DecisionError(f"no decision {decision_id}")
        if decision.outcome != "awaiting_approval":
            raise DecisionError(
                f"decision {decision_id} is {decision.outcome}, not awaiting approval"
            )
        return decision

    def _audit(self, actor: str, action: str, decision: Decision, reason: str) -> None:
        self.store.automation.audit(
            AuditEntry(
                at=self.clock(),
                actor=actor,
                action=action,
                target=f"decision/{decision.id}",
                reason=reason,
                details={"workload": decision.summary()["workload"]},
            )
        )


def is_kill_switch(policy: Policy, labels: dict[str, str], service: ServicePolicy | None) -> bool:
    """Is this alert one that may roll its workload back? (the kill-switch label, or one of
    its service's kill-switch matchers)"""
    if labels.get(policy.correlation.kill_switch_label, "").lower() == "true":
        return True
    return service is not None and any(matches(m, labels) for m in service.kill_switches)


def _new_decision(
    episode_id: str, labels: dict[str, str], starts_at: datetime, now: datetime
) -> Decision:
    """A blank decision about an episode (its id is the episode's), before any rule ran."""
    return Decision(
        id=episode_id,
        episode_id=episode_id,
        starts_at=starts_at,
        alertname=labels.get("alertname", ""),
        labels=labels,
        outcome="skipped",
        reason="",
        request_id=logs.trace().get("request_id", ""),
        created_at=now,
        updated_at=now,
    )


def _bad_revision(decision: Decision) -> str:
    """The revision to roll back from; a CI-only rollout without revision uses its id."""
    rollout = decision.rollout
    return rollout.revision or f"rollout-{rollout.id}"


def _detail(decision: Decision) -> str:
    """One sentence a human can read in the API and on the dashboard."""
    workload = decision.workload.workload().key if decision.workload else "no workload"
    revision = decision.rollout.revision if decision.rollout else None
    if decision.outcome == "rollback":
        return f"rolling back {workload} from revision {revision} (job {decision.job_id})"
    if decision.outcome == "dry_run":
        return f"dry-run: would roll back {workload} from revision {revision}"
    if decision.outcome == "awaiting_approval":
        return f"waiting for a human to approve rolling back {workload} from revision {revision}"
    if decision.outcome == "deferred":
        return (
            f"deferred until {decision.recheck_at.isoformat()}: the alert must fire for "
            f"{decision.policy.get('min_firing')} before Backstop acts"
        )
    if decision.reason == "internal_error":
        error = decision.evidence.get("error", "an error")
        return f"{workload}: {explain('internal_error')} ({error})"
    return f"{workload}: {explain(decision.reason)}"
