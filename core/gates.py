"""Gates: Backstop's judgement of a workload's current revision, for progressive delivery.

A gate is healthy when
1. no kill-switch episode for the workload is firing that began after its current revision
   started rolling out (an alert that began earlier is about an older revision: counting
   it would block the very rollout that fixes it),
2. Backstop is not rolling this revision back,
3. the service's verify queries hold right now (when Prometheus and queries are set), and
4. none of the revision's images is quarantined (core/quarantine.py).

For a service with judgment KPIs the revision is also judged against the one before it
(core/gatejudgment.py): `confirmed` makes the gate unhealthy; `not_confirmed` means the
revision is not what is wrong, so firing kill switches and failing verify queries (1 and 3)
are reported but do not close the gate; otherwise (and in `advise` mode) 1 and 3 count as
they are. 2 and 4 always count.

Flagger asks before and during a canary's steps and Argo Rollouts asks from an
AnalysisTemplate, so each step of 5% -> 20% -> 50% -> 100% passes only while all hold.
"""

from dataclasses import dataclass, field
from datetime import datetime

from config.policy import Policy, ServicePolicy
from core.correlation import KIND_LABELS, workload_for
from core.gatejudgment import check_quarantine, judged, weigh
from core.integrations.prometheus import Prometheus
from core.kpis import evaluate, holds
from core.models import Workload
from core.records import Rollout
from core.rules import is_kill_switch
from core.store import Store

# Episodes read per gate: every episode active since the revision began, up to this many.
EPISODE_LIMIT = 5000
LABEL_OF_KIND = {kind: label for label, kind in KIND_LABELS.items()}


class UnknownWorkload(LookupError):
    """No rollout of the workload is recorded: Backstop cannot vouch for it."""


class PrometheusUnavailable(RuntimeError):
    """A verify query could not be evaluated: the gate cannot say the workload is healthy."""


class UnknownService(LookupError):
    """The gate named a service the policy does not have."""


@dataclass
class Verdict:
    """A gate's answer, with every reason and what it checked."""

    workload: Workload
    rollout: Rollout
    service: str | None
    checked_at: datetime
    reasons: list[str] = field(default_factory=list)
    firing: list[dict] = field(default_factory=list)
    earlier: list[dict] = field(default_factory=list)
    verify: dict = field(default_factory=dict)
    rolling_back: str | None = None
    quarantined: list[dict] = field(default_factory=list)
    judgment: dict = field(default_factory=dict)
    # Reasons the judgment set aside: the revision is no worse than the one before it.
    excused: list[str] = field(default_factory=list)
    # What a healthy answer says instead of "every check holds" when reasons were set aside.
    note: str = ""

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict:
        return {
            "healthy": self.healthy,
            "workload": self.workload.to_json(),
            "revision": self.rollout.revision,
            "rollout_started_at": self.rollout.started_at.isoformat(),
            "service": self.service,
            "reasons": self.reasons
            or [self.note or "no kill switch is firing and every check holds"],
            "checks": {
                "kill_switches_firing": self.firing,
                "firing_since_before_this_revision": self.earlier,
                "rolling_back": self.rolling_back,
                "verify": self.verify,
                "quarantined": self.quarantined,
                "judgment": self.judgment,
                "not_blamed_on_this_revision": self.excused,
            },
            "checked_at": self.checked_at.isoformat(),
        }


def judge(
    store: Store,
    policy: Policy,
    prometheus: Prometheus | None,
    workload: Workload,
    now: datetime,
    *,
    service_name: str | None = None,
) -> Verdict:
    """Judge the workload's current (latest recorded) revision now."""
    latest = store.rollouts.for_workload(workload, limit=1)
    if not latest:
        raise UnknownWorkload(
            f"no rollout of {workload.key} is recorded: is the watcher watching "
            f"namespace {workload.namespace}?"
        )
    service = service_of(policy, workload, service_name)
    verdict = Verdict(workload, latest[0], service.name if service else None, now)
    skew = policy.timing(service).clock_skew
    _check_episodes(store, policy, verdict, since=verdict.rollout.started_at - skew)
    _check_verify(policy, service, prometheus, verdict)
    # 1 and 3 are timing: the judgment may set them aside; 2 and 4 always count.
    timing, verdict.reasons = verdict.reasons, []
    _check_rollback(store, verdict)
    check_quarantine(store, verdict)
    weigh(verdict, judged(store, service, prometheus, verdict), timing)
    return verdict


def service_of(policy: Policy, workload: Workload, name: str | None) -> ServicePolicy | None:
    """The service whose verify queries and judgment apply: named, else the one whose
    explicit workload this is, else the first whose `match` the workload's own labels
    satisfy."""
    if name is not None:
        for service in policy.services:
            if service.name == name:
                return service
        raise UnknownService(f"no service {name!r} in the policy")
    for service in policy.services:
        ref = service.workload
        if ref is not None and workload == Workload(
            ref.cluster or policy.cluster, ref.namespace, ref.kind, ref.name
        ):
            return service
    labels = {"namespace": workload.namespace, LABEL_OF_KIND[workload.kind]: workload.name}
    if workload.cluster != policy.cluster:
        labels["cluster"] = workload.cluster
    return policy.service_for(labels)


def _check_episodes(store: Store, policy: Policy, verdict: Verdict, *, since: datetime) -> None:
    """Firing kill switches about this workload, split by when they began."""
    # An episode that began after `since` was last active after it too: this read is exact.
    for episode in store.episodes.active_after(since, limit=EPISODE_LIMIT):
        if episode.status != "firing":
            continue
        labels = episode.event.get("labels", {})
        service = policy.service_for(labels)
        if workload_for(labels, policy, service) != verdict.workload:
            continue
        if not is_kill_switch(policy, labels, service):
            continue
        brief = {"episode_id": episode.id, "alertname": episode.alertname}
        brief["starts_at"] = episode.starts_at
        if datetime.fromisoformat(episode.starts_at) >= since:
            verdict.firing.append(brief)
        else:
            verdict.earlier.append(brief)
    if verdict.firing:
        names = ", ".join(sorted({e["alertname"] for e in verdict.firing}))
        verdict.reasons.append(
            f"{len(verdict.firing)} kill-switch alert(s) firing since revision "
            f"{verdict.rollout.revision} rolled out: {names}"
        )


def _check_rollback(store: Store, verdict: Verdict) -> None:
    """Is Backstop rolling this revision back (or has it)?"""
    revision = verdict.rollout.revision
    if revision is None:
        return
    decision_id = store.automation.claimed(verdict.workload, revision)
    if decision_id:
        verdict.rolling_back = decision_id
        verdict.reasons.append(
            f"Backstop is rolling revision {revision} back (decision {decision_id})"
        )


def _check_verify(
    policy: Policy, service: ServicePolicy | None, prometheus: Prometheus | None, verdict: Verdict
) -> None:
    """Evaluate the service's verify queries once, now."""
    queries = policy.timing(service).verify.queries
    if not queries:
        verdict.verify = {"mode": "none", "detail": "no verify queries configured"}
        return
    if prometheus is None:
        verdict.verify = {"mode": "none", "detail": "PROMETHEUS_URL is not set"}
        return
    results = {}
    for query in queries:
        sample = evaluate(prometheus, query.query)
        if "error" in sample:
            raise PrometheusUnavailable(f"verify query {query.name}: {sample['error']}")
        values = sample["values"]
        held = values is not None and holds(query, values)
        results[query.name] = {
            "query": query.query,
            "comparison": query.comparison,
            "threshold": query.threshold,
            "values": values,
            "held": held,
        }
        if values is None:
            verdict.reasons.append(f"verify query {query.name} returned no data")
        elif not held:
            verdict.reasons.append(
                f"verify query {query.name} breaks its threshold: {values} "
                f"{query.comparison} {query.threshold} is false"
            )
    verdict.verify = {"mode": "prometheus", "queries": results}
