"""Recording a rollback as it goes: each step with its timing, the terminal outcome, and
the hand-over to incidents. The rollback record doubles as the job's checkpoint, so every
step is saved as soon as it ends (workers/rollback.py runs the steps). A revision reverted
for good (verified, or verification_failed) is quarantined (core/quarantine.py). A real
rollback's start and outcome are told to chat (workers/chat.py)."""

import logging
from collections.abc import Callable
from datetime import datetime

import redis

from config.policy import Policy
from core import queues
from core.decisions import INCONCLUSIVE
from core.models import Workload
from core.quarantine import quarantine_for
from core.records import AuditEntry, Rollback, RollbackStep
from core.store import Store
from core.vocabulary import RollbackStatus
from workers.freezes import next_review

log = logging.getLogger("backstop.rollback")


class Recorder:
    """What the rollback executor records with; it supplies the store, the policy, the
    connection and the clock."""

    store: Store
    policy: Policy
    connection: redis.Redis
    clock: Callable[[], datetime]

    def _step(
        self,
        rollback: Rollback,
        name: str,
        status: str,
        started: datetime,
        detail: str = "",
        **data,
    ) -> None:
        rollback.steps.append(
            RollbackStep(
                name=name,
                status=status,
                started_at=started,
                finished_at=self.clock(),
                detail=detail,
                data=data,
            )
        )
        rollback.updated_at = self.clock()
        self.store.rollbacks.save(rollback)
        step = rollback.steps[-1]
        fields = {"step": name, "status": status, "duration_ms": step.duration_ms}
        log.info("rollback step %s %s: %s", name, status, detail, extra={"fields": fields})

    def _freeze(self, rollback: Rollback, workload: Workload, reason: str) -> Rollback:
        """The prior version is not healthy either: stop automating this workload."""
        why = f"rollback {rollback.id} ended in verification_failed ({reason})"
        self.store.automation.pause(
            workload=workload, actor="backstop", reason=why, now=self.clock()
        )
        self.store.automation.audit(
            AuditEntry(
                at=self.clock(), actor="backstop", action="freeze", target=workload.key, reason=why
            )
        )
        return self.finish(rollback, "verification_failed", reason)

    def finish(self, rollback: Rollback, status: RollbackStatus, reason: str) -> Rollback:
        """Record the terminal outcome and, except for a dry run, hand over to incidents."""
        rollback.status, rollback.reason = status, reason
        rollback.finished_at = rollback.updated_at = self.clock()
        if status in ("verified", "verification_failed"):
            # Before the incident is filed, so its ticket can say the revision is kept out.
            self._quarantine(rollback)
        if status != "dry_run":
            rollback.incident_job_id = queues.enqueue_incident(
                self.connection, rollback_id=rollback.id, attempt=rollback.attempts
            )
            if reason != INCONCLUSIVE:  # the decision's awaiting_approval says it all
                self._announce(rollback, status)
        self.store.rollbacks.save(rollback)
        fields = {"status": status, "reason": reason, "workload": rollback.workload.workload().key}
        level = logging.INFO if status in ("verified", "dry_run") else logging.WARNING
        log.log(level, "rollback %s: %s", status, reason, extra={"fields": fields})
        return rollback

    def _announce(self, rollback: Rollback, event: str) -> None:
        """Tell the chat targets (workers/chat.py); never raises, never waits."""
        queues.notify_chat(
            self.connection,
            self.policy.chat,
            rollback_id=rollback.id,
            event=event,
            attempt=rollback.attempts,
        )

    def _quarantine(self, rollback: Rollback) -> None:
        """Keep the reverted revision's images out until a human releases them."""
        workload = rollback.workload.workload()
        quarantine = quarantine_for(
            rollback,
            self.store.rollouts.by_revision(workload, rollback.bad_revision),
            self.store.rollbacks.evidence(rollback.id),
            self.policy.quarantine,
            self.clock(),
        )
        if quarantine is not None and self.store.quarantine.add(quarantine):
            fields = {"workload": workload.key, "images": quarantine.images}
            log.info("revision %s quarantined", rollback.bad_revision, extra={"fields": fields})
            # Its review ends it when its Jira issue is done, or at its expiry.
            due = next_review(self.clock(), self.policy.quarantine.review_interval)
            queues.schedule_quarantine_review(self.connection, due)
