"""The judgment step of a rollback (between evidence and the revert): is the bad revision
really worse than the target? The statistics are core/judgment.py, the queries
core/judging.py; this records the step and acts on the verdict."""

from config.policy import Policy
from core.decisions import Engine
from core.integrations.prometheus import Prometheus
from core.judging import consequence, judge
from core.models import Workload
from core.records import Decision, Rollback
from workers.preflight import Revisions, started_at
from workers.recording import Recorder
from workers.revert import template_hash


class JudgmentStep(Recorder):
    """What the rollback executor judges with; it supplies the policy and Prometheus."""

    policy: Policy
    prometheus: Prometheus | None

    def _judge(
        self,
        rollback: Rollback,
        decision: Decision,
        workload: Workload,
        revisions: Revisions,
        target: str,
    ) -> Rollback | None:
        """Is the bad revision really worse than the target (core/judging.py)? A
        Rollback when the verdict ends it here; judged once (a human's approval of an
        inconclusive judgment resumes past it)."""
        service = self.policy.service_for(decision.labels)
        policy = service.judgment if service is not None else None
        if policy is None or not policy.active or rollback.step("judgment") is not None:
            return None
        started = self.clock()
        history = {r.revision: r for r in self.store.rollouts.for_workload(workload) if r.revision}
        children = revisions.children
        rollback.judgment = judge(
            self.prometheus,
            policy,
            workload,
            bad_hash=template_hash(workload.kind, children[rollback.bad_revision]),
            target_hash=template_hash(workload.kind, children[target]),
            deployed_at=started_at(rollback.bad_revision, revisions, history) or started,
            now=started,
        )
        stop = consequence(policy.mode, rollback.judgment["verdict"])
        status = "ok" if stop is None else "blocked"
        self._step(rollback, "judgment", status, started, rollback.judgment["detail"])
        if stop is None:
            return None
        if rollback.mode != "dry-run":
            Engine(self.store, self.policy, self.connection, self.clock).judged(decision, stop)
        return self.finish(rollback, "blocked", stop)
