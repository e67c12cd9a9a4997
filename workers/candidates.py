"""Judging the candidate rollouts of an ambiguous episode.

Several rollouts of a workload started within `lookback` before an episode: timing alone
cannot say which one broke it. For a service with judgment KPIs, the decision waits
(`deferred: judging_candidates`) while this job judges each candidate revision against
the revision before it (core/judging.py: side by side while both serve, else its own time
against as long a window before it), then decides again with the verdicts
(core/decisions.py `candidates_judged`). In `require` mode exactly one `confirmed`
candidate becomes the decision's rollout and goes through the remaining rules; none or
several leave the decision `skipped: ambiguous` for a human, with every verdict in its
evidence. In `advise` mode the verdicts are recorded and nothing is picked.

Each candidate is judged over its own time as the latest revision: a rollout followed by
another is judged up to when the next one started, the newest up to now.

A revision's pods are told apart by the pod template hash the watcher recorded on its
rollout; for a rollout recorded without one, by the cluster's ReplicaSet or
ControllerRevision of that revision.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from config.judgment import JudgmentPolicy
from config.policy import Policy
from core.correlation import correlate
from core.decisions import Engine
from core.errors import PermanentError, TransientError
from core.integrations.kubernetes import Kube
from core.integrations.prometheus import Prometheus
from core.judging import judge
from core.models import Workload
from core.records import Decision, Rollout
from core.rules import JUDGING
from core.store import Store
from workers.preflight import read_revisions
from workers.revert import template_hash

log = logging.getLogger("backstop.candidates")

# What a candidate's record keeps of each KPI: the numbers, not the points (a decision is
# listed often; the points of the rollback's own judgment are kept on the rollback).
DROPPED = ("series", "queries")


@dataclass
class CandidateJudge:
    """Judges the candidate rollouts of one waiting decision and decides it again."""

    store: Store
    policy: Policy
    engine: Engine
    prometheus: Prometheus | None
    kube_for: Callable[[str], Kube]
    clock: Callable[[], datetime]

    def run(self, episode_id: str) -> dict:
        """Judge the candidates of `episode_id`'s decision, if it still waits on them."""
        decision = self.store.decisions.get(episode_id)
        if decision is None or (decision.outcome, decision.reason) != ("deferred", JUDGING):
            return {"episode_id": episode_id, "judged": 0, "reason": "no decision waits on it"}
        service = self.policy.service_for(decision.labels)
        policy = service.judgment if service is not None else None
        if policy is None or not policy.active or decision.workload is None:
            # The policy changed since the decision was deferred: nothing to judge with.
            judged = self._record({}, None, "the service no longer judges revisions")
        else:
            judged = self._judge_all(decision, decision.workload.workload(), policy)
        decided = self.engine.candidates_judged(episode_id, judged)
        outcome = decided.summary() if decided is not None else {}
        return {"episode_id": episode_id, "judged": len(judged["revisions"]), **outcome}

    def _judge_all(self, decision: Decision, workload: Workload, policy: JudgmentPolicy) -> dict:
        timing = self.policy.timing(self.policy.service_for(decision.labels))
        rollouts = self.store.rollouts.for_workload(workload)
        candidates = correlate(decision.starts_at, rollouts, timing).candidates
        hashes = Hashes(workload, {r.revision: r for r in rollouts if r.revision}, self.kube_for)
        now = self.clock()
        starts = sorted(r.started_at for r in rollouts)
        verdicts = {}
        for candidate in candidates:
            if candidate.revision is None:
                continue
            # Judged while it was the latest: up to the next rollout's start, else now.
            until = min((s for s in starts if s > candidate.started_at), default=now)
            verdict = self._judge_one(candidate, workload, policy, hashes, min(until, now))
            verdicts[candidate.revision] = verdict
        confirmed = [rev for rev, v in verdicts.items() if v["verdict"] == "confirmed"]
        picked = confirmed[0] if len(confirmed) == 1 and policy.mode == "require" else None
        return self._record(verdicts, picked, _why(confirmed, policy.mode), now)

    def _judge_one(
        self,
        candidate: Rollout,
        workload: Workload,
        policy: JudgmentPolicy,
        hashes: "Hashes",
        until: datetime,
    ) -> dict:
        revision, against = candidate.revision or "", candidate.previous_revision
        bad_hash = hashes.of(revision)
        target_hash = hashes.of(against) if against else ""
        if not bad_hash or not target_hash:
            missing = revision if not bad_hash else against or "the revision before it"
            detail = f"nodata (the pods of revision {missing} cannot be told apart)"
            if hashes.error:
                detail += f": {hashes.error}"
            return {"verdict": "nodata", "against": against, "detail": detail, "kpis": []}
        found = judge(
            self.prometheus,
            policy,
            workload,
            bad_hash=bad_hash,
            target_hash=target_hash,
            deployed_at=candidate.started_at,
            now=until,
        )
        kpis = [{k: v for k, v in kpi.items() if k not in DROPPED} for kpi in found["kpis"]]
        return {
            "verdict": found["verdict"],
            "against": against,
            "detail": found["detail"],
            "kpis": kpis,
        }

    def _record(
        self, verdicts: dict, picked: str | None, why: str, now: datetime | None = None
    ) -> dict:
        return {
            "picked": picked,
            "why": why,
            "judged_at": (now or self.clock()).isoformat(),
            "revisions": verdicts,
        }


class Hashes:
    """Each revision's pod template hash: from its rollout's record, else from the cluster
    (read once, and only if needed)."""

    def __init__(
        self, workload: Workload, history: dict[str, Rollout], kube_for: Callable[[str], Kube]
    ):
        self.workload, self.history, self.kube_for = workload, history, kube_for
        self.children: dict[str, dict] | None = None
        self.error = ""

    def of(self, revision: str) -> str:
        """The hash of `revision`'s pods; "" when neither Backstop nor the cluster knows it."""
        recorded = self.history.get(revision)
        if recorded is not None and recorded.template_hash:
            return recorded.template_hash
        if self.children is None:
            self.children = self._read()
        child = self.children.get(revision)
        return template_hash(self.workload.kind, child) if child is not None else ""

    def _read(self) -> dict[str, dict]:
        try:
            return read_revisions(self.kube_for(self.workload.cluster), self.workload).children
        except (TransientError, PermanentError) as exc:
            log.warning("candidates of %s: revisions unreadable: %s", self.workload.key, exc)
            self.error = f"the cluster could not list its revisions: {exc}"
            return {}


def _why(confirmed: list[str], mode: str) -> str:
    """One sentence on what the verdicts mean for the decision."""
    if mode != "require":
        return f"judgment mode {mode}: recorded only, a human decides"
    if len(confirmed) == 1:
        return f"only revision {confirmed[0]} is confirmed worse than the revision before it"
    if not confirmed:
        return "no candidate is confirmed worse than the revision before it: a human decides"
    return f"revisions {', '.join(confirmed)} are all confirmed worse: a human decides"
