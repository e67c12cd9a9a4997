"""The rules that decide about one alert episode, in order; the first that applies wins.

1. the alert is not a kill switch                     → skipped: not_kill_switch
2. it names no workload                               → skipped: no_workload
   its cluster is not one Backstop guards             → skipped: unknown_cluster
3. no rollout in the lookback window                  → skipped: no_recent_deployment
   the episode began before the latest rollout        → skipped: predates_deployment
   several rollouts in the window                     → skipped: ambiguous, unless the
     service judges revisions: once it has fired for min_firing → deferred:
     judging_candidates; the one candidate the judgment confirmed becomes the rollout
   only the workload's creation in the window         → skipped: first_revision
   the rollout is Backstop's own rollback             → skipped: rollback_of_rollback
4. that revision is already (being) rolled back       → skipped: already_rolled_back
5. automation is paused (globally or this workload)   → skipped: paused
6. the episode is younger than min_firing             → deferred (re-checked later)
7. the workload is in its cooldown                    → skipped: cooldown
8. the circuit breaker is open                        → skipped: circuit_open
9. mode dry-run → dry_run; approve → awaiting_approval; enforce → rollback (enqueued)

The rules only read (the policy, the rollouts, the automation state) and fill in what they
found on the decision (workload, rollout, evidence, confidence). What a verdict sets in
motion (a re-check, a job, the claim of a rollback) is the Engine's (core/decisions.py).
In enforce mode, 4, 5, 7 and 8 are checked again atomically with claiming the rollback
(core/store/claim.lua), so concurrent receivers can never both roll back.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from config.durations import format_duration
from config.policy import CircuitBreakerPolicy, DecisionDefaults, Policy, ServicePolicy, matches
from core.correlation import correlate, workload_for
from core.models import Workload
from core.records import Decision, Rollout, WorkloadRecord
from core.store import Store
from core.vocabulary import Outcome

TIMING_FIELDS = ("min_firing", "lookback", "clock_skew", "cooldown")

# What each correlation status (core.correlation.Status) means when it is not a match.
CORRELATION_REASONS = {
    "none": "no_recent_deployment",
    "predates": "predates_deployment",
    "ambiguous": "ambiguous",
    "first_revision": "first_revision",
}

# What a verdict asks the Engine to do besides recording it: nothing more; schedule the
# re-check of a deferred episode; enqueue a dry-run job; claim the rollback and enqueue it;
# or enqueue the rollback this decision already claimed (its receiver died in between).
Act = Literal["record", "defer", "dry_run", "claim", "resume", "judge"]
# The decision waits while each candidate rollout is judged (workers/candidates.py).
JUDGING = "judging_candidates"


@dataclass(frozen=True)
class Verdict:
    """The outcome and reason the rules reached, and what it sets in motion."""

    outcome: Outcome
    reason: str
    act: Act = "record"
    # When a deferred decision is checked again.
    recheck_at: datetime | None = None


ENQUEUE = Verdict("rollback", "enqueued", "claim")


@dataclass(frozen=True)
class Snapshot:
    """The policy values one decision is made with, read once, before any rule runs."""

    service: ServicePolicy | None
    timing: DecisionDefaults
    mode: str
    breaker: CircuitBreakerPolicy

    @classmethod
    def of(cls, policy: Policy, labels: dict[str, str]) -> "Snapshot":
        service = policy.service_for(labels)
        return cls(service, policy.timing(service), policy.mode, policy.circuit_breaker)

    def stamp(self, decision: Decision) -> None:
        """Record on the decision the values it was made with."""
        decision.mode = self.mode
        decision.policy = {
            "service": self.service.name if self.service else None,
            "mode": self.mode,
            **{name: format_duration(getattr(self.timing, name)) for name in TIMING_FIELDS},
            "circuit_breaker": {
                "max_rollbacks": self.breaker.max_rollbacks,
                "window": format_duration(self.breaker.window),
            },
        }


def judge(
    decision: Decision, snapshot: Snapshot, policy: Policy, store: Store, now: datetime
) -> Verdict:
    """Run the rules in order on one decision; the verdict of the first that applies."""
    workload = _identify(decision, snapshot, policy)
    if isinstance(workload, Verdict):
        return workload
    rollout = _correlate(decision, workload, snapshot, store, now)
    if isinstance(rollout, Verdict):
        return rollout
    return _hold(decision, workload, rollout, snapshot, store, now) or _by_mode(snapshot)


def _identify(decision: Decision, snapshot: Snapshot, policy: Policy) -> Verdict | Workload:
    """Rules 1 and 2: a kill switch, naming a workload in a guarded cluster (returned)."""
    labels, service = decision.labels, snapshot.service
    if not is_kill_switch(policy, labels, service):
        return Verdict("skipped", "not_kill_switch")
    workload = workload_for(labels, policy, service)
    if workload is None:
        return Verdict("skipped", "no_workload")
    decision.workload = WorkloadRecord.of(workload)
    if workload.cluster not in policy.guarded_clusters():
        # Never guess: the same namespace/name may exist in a cluster we do guard.
        return Verdict("skipped", "unknown_cluster")
    return workload


def _correlate(
    decision: Decision, workload: Workload, snapshot: Snapshot, store: Store, now: datetime
) -> Verdict | Rollout:
    """Rule 3: one rollout of the workload explains the episode (returned), not ours."""
    found = correlate(decision.starts_at, store.rollouts.for_workload(workload), snapshot.timing)
    decision.evidence, decision.confidence = found.evidence, found.confidence
    if found.status == "ambiguous":
        return _disambiguate(decision, found.candidates, snapshot, now)
    if found.status != "match" or found.rollout is None:
        return Verdict("skipped", CORRELATION_REASONS[found.status])
    decision.rollout = found.rollout
    if found.rollout.by_backstop:
        return Verdict("skipped", "rollback_of_rollback")
    return found.rollout


def _disambiguate(
    decision: Decision, candidates: list[Rollout], snapshot: Snapshot, now: datetime
) -> Verdict | Rollout:
    """Rule 3 with several candidates: the one the judgment confirmed worse (alone) once
    they were judged; for a service that judges revisions, judge them once the episode
    has fired for min_firing (as long as a rollback would have waited anyway, so each
    revision has had time to show itself); otherwise a human decides."""
    judged = decision.candidates
    if judged:
        decision.evidence["candidate_judgments"] = judged
        picked = next((r for r in candidates if r.revision == judged.get("picked")), None)
        if picked is None:
            return Verdict("skipped", "ambiguous")
        decision.rollout, decision.confidence = picked, "judged"
        return picked
    judgment = snapshot.service.judgment if snapshot.service is not None else None
    if judgment is None or not judgment.active:
        return Verdict("skipped", "ambiguous")
    due = decision.starts_at + snapshot.timing.min_firing
    if now < due:
        decision.recheck_at = due
        return Verdict("deferred", "min_firing", "defer", recheck_at=due)
    return Verdict("deferred", JUDGING, "judge")


def _hold(
    decision: Decision,
    workload: Workload,
    rollout: Rollout,
    snapshot: Snapshot,
    store: Store,
    now: datetime,
) -> Verdict | None:
    """Rules 4 to 8: what holds a rollback back although a rollout explains the alert."""
    automation, bad = store.automation, revision_of(rollout)
    claimed_by = automation.claimed(workload, bad)
    if claimed_by is not None and claimed_by != decision.id:
        return Verdict("skipped", "already_rolled_back")
    if automation.paused(workload) is not None:
        return Verdict("skipped", "paused")
    if claimed_by == decision.id:
        # This decision claimed the rollback, then its receiver died (or Redis went away)
        # before the job was enqueued: finish what it started. The unique job id keeps it
        # to one job; the cooldown and breaker its own claim set must not stop it.
        return Verdict("rollback", "enqueued", "resume")
    due = decision.starts_at + snapshot.timing.min_firing
    if now < due:
        decision.recheck_at = due
        return Verdict("deferred", "min_firing", "defer", recheck_at=due)
    held = None
    if automation.cooldown_left(workload, now=now, cooldown=snapshot.timing.cooldown):
        held = "cooldown"
    elif automation.circuit(now=now, window=snapshot.breaker.window)["state"] == "open":
        held = "circuit_open"
    if held is not None:
        # A concurrent receiver may have claimed this very rollback since the claim was
        # read above, setting the cooldown (or tripping the breaker) as it did: then the
        # claim is why nothing happens here, as claim.lua, which checks it first, says.
        if automation.claimed(workload, bad) not in (None, decision.id):
            held = "already_rolled_back"
        return Verdict("skipped", held)
    return None


def _by_mode(snapshot: Snapshot) -> Verdict:
    """Rule 9: what the mode makes of a rollback nothing holds back."""
    if snapshot.mode == "dry-run":
        return Verdict("dry_run", "would_roll_back", "dry_run")
    if snapshot.mode == "approve":
        return Verdict("awaiting_approval", "approval_required")
    return ENQUEUE


def is_kill_switch(policy: Policy, labels: dict[str, str], service: ServicePolicy | None) -> bool:
    """Is this alert one that may roll its workload back? (the kill-switch label, or one of
    its service's kill-switch matchers)"""
    if labels.get(policy.correlation.kill_switch_label, "").lower() == "true":
        return True
    return service is not None and any(matches(m, labels) for m in service.kill_switches)


def bad_revision(decision: Decision) -> str:
    """The revision a decision that blamed a rollout rolls back from."""
    if decision.rollout is None:
        raise ValueError(f"decision {decision.id} blames no rollout")
    return revision_of(decision.rollout)


def workload_of(decision: Decision) -> Workload:
    """The workload a decision that named one is about."""
    if decision.workload is None:
        raise ValueError(f"decision {decision.id} names no workload")
    return decision.workload.workload()


def revision_of(rollout: Rollout) -> str:
    """The revision to roll back from; a CI-only rollout without revision uses its id."""
    return rollout.revision or f"rollout-{rollout.id}"
