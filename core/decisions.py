"""The Engine: for each alert episode, whether to roll back, with a recorded reason.

Deciding is three steps: a snapshot of the policy values that apply (rules.Snapshot), the
rules in their order (core/rules.py, which lists them), and acting on the verdict: record
the decision, and schedule a re-check, enqueue a job, or claim the rollback and enqueue it.
The on-call actions (approve, deny, retry a rollback) go through the Engine as well.

Any other exception while deciding one episode → skipped: internal_error, which always
pages (core/intake.py decides each episode of a batch on its own).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from config.policy import Policy
from core import logs, paging, queues, rules, testpoints
from core.records import AuditEntry, Decision, DecisionStep, Rollback
from core.rules import JUDGING, Snapshot, Verdict, bad_revision, workload_of
from core.store import Store
from core.vocabulary import Outcome, explain

# Reasons that page a human whatever incidents.pagerduty.page_decisions says: a bug must
# never stay silent.
ALWAYS_PAGE = frozenset({"internal_error"})
# The judgment could not tell: the rollback waits for a human (core/judging.py).
INCONCLUSIVE = "judgment_inconclusive"
# A human said no to a rollback that waited for approval.
DENIED = "denied"


log = logging.getLogger("backstop.decisions")


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
        return self._finish(decision, now, "skipped", "resolved", later=True)

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
        return self._again(decision)

    def candidates_judged(self, episode_id: str, candidates: dict) -> Decision | None:
        """The candidate rollouts of a decision waiting on their judgment were judged
        (workers/candidates.py): decide again with them, unless the episode resolved."""
        decision = self.store.decisions.get(episode_id)
        if decision is None or (decision.outcome, decision.reason) != ("deferred", JUDGING):
            return decision
        decision.candidates = candidates
        return self._again(decision)

    def _again(self, decision: Decision) -> Decision:
        """Decide about a deferred episode again, now, unless it resolved meanwhile."""
        now = self.clock()
        episode = self.store.episodes.episode(decision.episode_id)
        if episode is None or episode.status == "resolved":
            return self._finish(decision, now, "skipped", "resolved")
        return self._evaluate(decision, now)

    def approve(self, decision_id: str, *, actor: str, reason: str = "") -> Decision:
        """A human approves an awaiting rollback: claim it (bypassing pause, cooldown and
        breaker, but still counted by the breaker) and enqueue it."""
        decision = self._awaiting(decision_id)
        now = self.clock()
        skip = self._claim(decision, Snapshot.of(self.policy, decision.labels), now, force=True)
        self._audit(actor, "approve", decision, reason)
        if skip is not None:
            return self._finish(decision, now, "skipped", skip, by=actor, note=reason)
        return self._enqueue(decision, now, by=actor, note=reason)

    def deny(self, decision_id: str, *, actor: str, reason: str = "") -> Decision:
        """A human denies an awaiting rollback (chat hears of it: `denied`)."""
        decision = self._awaiting(decision_id)
        self._audit(actor, "deny", decision, reason)
        return self._finish(decision, self.clock(), "skipped", DENIED, by=actor, note=reason)

    def judged(self, decision: Decision, reason: str) -> Decision:
        """The rollback job's judgment: the bad revision is no worse (`not_caused_by_rollout`:
        skipped) or it could not tell (`judgment_inconclusive`: a human approves or denies).
        Either way nothing was rolled back, so the claim on the revision is given back."""
        now = self.clock()
        self.store.automation.release_claim(
            workload_of(decision), bad_revision(decision), decision.id
        )
        if reason == INCONCLUSIVE:
            return self._finish(decision, now, "awaiting_approval", reason)
        return self._finish(decision, now, "skipped", reason)

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
            queues.RollbackRequest(
                found.id,
                found.decision_id,
                found.workload.workload(),
                found.bad_revision,
                found.mode,
            ),
        )
        return found

    # -- deciding --------------------------------------------------------------------------

    def _evaluate(self, decision: Decision, now: datetime) -> Decision:
        """Snapshot the policy, run the rules, act on their verdict."""
        snapshot = Snapshot.of(self.policy, decision.labels)
        snapshot.stamp(decision)
        verdict = rules.judge(decision, snapshot, self.policy, self.store, now)
        return self._act(decision, verdict, snapshot, now)

    def _act(
        self, decision: Decision, verdict: Verdict, snapshot: Snapshot, now: datetime
    ) -> Decision:
        """Set in motion what the verdict asks for, and record the decision."""
        if verdict.act == "defer" and verdict.recheck_at is not None:
            queues.schedule_recheck(
                self.connection, episode_id=decision.episode_id, at=verdict.recheck_at
            )
        elif verdict.act == "dry_run":
            # The dry-run job runs pre-flight and records the exact patch; it changes nothing.
            decision.job_id = queues.enqueue_rollback(
                self.connection, _request(decision, mode="dry-run")
            )
        elif verdict.act == "claim":
            skip = self._claim(decision, snapshot, now)
            if skip is not None:
                return self._finish(decision, now, "skipped", skip)
            testpoints.reached("after_claim")
            return self._enqueue(decision, now)
        elif verdict.act == "resume":
            return self._enqueue(decision, now)
        elif verdict.act == "judge":
            queues.enqueue_candidate_judgment(self.connection, episode_id=decision.episode_id)
        # Recorded only, or re-checked minutes from now: nobody reads it before the batch
        # it is part of (a webhook's) is written. A job about to run must find it written.
        later = verdict.act in ("record", "defer")
        return self._finish(decision, now, verdict.outcome, verdict.reason, later=later)

    def _claim(
        self, decision: Decision, snapshot: Snapshot, now: datetime, *, force: bool = False
    ) -> str | None:
        """Claim the rollback atomically (core/store/claim.lua); the reason not to, or None.
        `force` (a human's approval) bypasses pause, cooldown and breaker, still counting."""
        return self.store.automation.claim_rollback(
            workload=workload_of(decision),
            revision=bad_revision(decision),
            decision_id=decision.id,
            now=now,
            cooldown=snapshot.timing.cooldown,
            max_rollbacks=snapshot.breaker.max_rollbacks,
            window=snapshot.breaker.window,
            force=force,
        )

    # -- recording -------------------------------------------------------------------------

    def _enqueue(
        self, decision: Decision, now: datetime, by: str = "backstop", note: str = ""
    ) -> Decision:
        # The claim is ours (keyed by this decision's id, which is the episode's), so a retry
        # after a failure here re-enqueues; the unique job id keeps it to one job.
        request = _request(decision)
        held = self.store.rollbacks.get(request.id)
        if held is not None and held.reason == INCONCLUSIVE:
            # A human approves what the judgment could not decide: the same rollback goes
            # on from its judgment step (workers/rollback.py does not judge it again).
            held.status, held.reason, held.finished_at = "running", f"approved by {by}", None
            self.store.rollbacks.save(held)
            decision.job_id = queues.retry_rollback(self.connection, request)
        else:
            decision.job_id = queues.enqueue_rollback(self.connection, request)
        return self._finish(decision, now, "rollback", "enqueued", by=by, note=note)

    def _finish(
        self,
        decision: Decision,
        now: datetime,
        outcome: Outcome,
        reason: str,
        by: str = "backstop",
        *,
        note: str = "",
        later: bool = False,
    ) -> Decision:
        """Record the decision; page or tell chat when it calls for it. `later`: no job reads
        it at once, so it may be written with its batch's others (DecisionStore.batched).
        `note`: what the human who approved or denied said."""
        decision.outcome, decision.reason = outcome, reason
        decision.detail = _detail(decision)
        decision.updated_at = now
        decision.history.append(
            DecisionStep(at=now, outcome=outcome, reason=reason, by=by, note=note)
        )
        page = outcome == "skipped" and (
            reason in ALWAYS_PAGE or reason in self.policy.incidents.pagerduty.page_decisions
        )
        chat = _chat_event(decision)
        self.store.decisions.save(decision, later=later and not page and not chat)
        if page:
            paging.request_page(self.store, self.connection, self.policy, decision, now)
        if chat:
            # Under its rollback's id: in Slack, the rollback's one message once approved
            # (or the wait's message, updated to say it was denied).
            queues.notify_chat(
                self.connection,
                self.policy.chat,
                rollback_id=rollback_id(decision),
                event=chat,
                decision_id=decision.id,
            )
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


def _chat_event(decision: Decision) -> str | None:
    """The chat event a decision's new outcome is, if any: a wait for approval, or a
    human's denial of one (a rollback's own events come from its job)."""
    if decision.workload is None or decision.rollout is None:
        return None
    if decision.outcome == "awaiting_approval":
        return "awaiting_approval"
    if (decision.outcome, decision.reason) == ("skipped", DENIED):
        return "denied"
    return None


def rollback_id(decision: Decision) -> str:
    """The id of the rollback a decision runs, or would run once approved: its chat
    messages are kept under it from the wait for approval on."""
    return _request(decision).id


def _request(decision: Decision, *, mode: str = "enforce") -> queues.RollbackRequest:
    """The rollback job a decision asks for."""
    return queues.RollbackRequest.new(
        decision_id=decision.id,
        workload=workload_of(decision),
        bad_revision=bad_revision(decision),
        mode=mode,
    )


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
    if decision.outcome == "deferred" and decision.reason == JUDGING:
        count = len(decision.evidence.get("candidates", []))
        return (
            f"judging the {count} rollouts of {workload} that could explain the alert: the one "
            "confirmed worse than the revision before it, if only one is, is rolled back"
        )
    if decision.outcome == "deferred":
        return (
            f"deferred until {decision.recheck_at.isoformat() if decision.recheck_at else '?'}: "
            "the alert must fire for "
            f"{decision.policy.get('min_firing')} before Backstop acts"
        )
    if decision.reason == "internal_error":
        error = decision.evidence.get("error", "an error")
        return f"{workload}: {explain('internal_error')} ({error})"
    return f"{workload}: {explain(decision.reason)}"
