"""What a gate (core/gates.py) adds to its timing checks: the judgment of the revision
against the one before it, and the quarantine.

**Judgment.** For a service with judgment KPIs, the gate's revision is judged against its
previous revision (core/judging.py), each found by the pod template hash the watcher
recorded on its rollout, the new one since its rollout started. The record is returned
without its points (a gate answers a controller several times a minute). A revision that
cannot be judged (no judgment KPIs, no Prometheus, no recorded hashes) says why, and the
gate keeps to its timing checks. What the verdict does to the gate (`weigh`):

- `confirmed`: the gate is unhealthy, naming the KPIs;
- `not_confirmed`: the revision is no worse than the one before it, so the timing checks'
  reasons (a kill switch firing since the rollout, a failing verify query) are listed as
  not blamed on it and do not close the gate;
- `inconclusive`, `nodata`, not judged, or any verdict in `advise` mode (the judgment is
  recorded only, as in a rollback): the timing checks count as they are.

**Quarantine.** A revision whose images a quarantine in force keeps out is unhealthy
whatever else holds: it is the revision Backstop rolled back, deployed again.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.policy import ServicePolicy
from core import quarantine as rules
from core.integrations.prometheus import Prometheus
from core.judging import judge
from core.store import Store

if TYPE_CHECKING:
    from core.gates import Verdict


@dataclass(frozen=True)
class Judged:
    """The judgment's record for the gate, its verdict ("" when not judged), the policy's
    mode, and, when confirmed, the reason the gate gives."""

    record: dict
    verdict: str = ""
    mode: str = ""
    reason: str = ""


def judged(
    store: Store, service: ServicePolicy | None, prometheus: Prometheus | None, verdict: "Verdict"
) -> Judged:
    """Judge the gate's revision against the one before it, when the service asks for it."""
    policy = service.judgment if service is not None else None
    if policy is None or not policy.kpis:
        return _not_judged("the service has no judgment KPIs")
    if not policy.active:
        return _not_judged("the service's judgment is off")
    rollout = verdict.rollout
    previous = (
        store.rollouts.by_revision(verdict.workload, rollout.previous_revision)
        if rollout.previous_revision
        else None
    )
    if not rollout.template_hash or previous is None or not previous.template_hash:
        return _not_judged(
            "the pod template hashes of this revision and the one before it are not recorded"
        )
    if prometheus is None:
        return _not_judged("PROMETHEUS_URL is not set")
    # judge() turns Prometheus being away or a failing query into nodata: the gate then
    # answers on its timing checks rather than failing the controller's request.
    record = judge(
        prometheus,
        policy,
        verdict.workload,
        bad_hash=rollout.template_hash,
        target_hash=previous.template_hash,
        deployed_at=rollout.started_at,
        now=verdict.checked_at,
    )
    record["against"] = previous.revision
    for kpi in record["kpis"]:
        kpi.pop("series", None)
    worse = ", ".join(k["name"] for k in record["kpis"] if k["verdict"] == "confirmed")
    reason = (
        f"the judgment confirms revision {rollout.revision} is worse than revision "
        f"{previous.revision} on {worse}"
    )
    return Judged(record, record["verdict"], policy.mode, reason)


def weigh(verdict: "Verdict", found: Judged, timing: list[str]) -> None:
    """Put the judgment and the timing checks' reasons (1 and 3) on the verdict, and say
    in the judgment's record (`effect`) what it did to the gate."""
    verdict.judgment = record = found.record
    if found.verdict and found.mode == "advise":
        verdict.reasons += timing
        record["effect"] = "advise: recorded only; the timing checks count as they are"
    elif found.verdict == "confirmed":
        verdict.reasons += timing
        verdict.reasons.append(found.reason)
        record["effect"] = "the gate is unhealthy: " + found.reason
    elif found.verdict == "not_confirmed":
        verdict.excused = timing
        record["effect"] = (
            f"revision {verdict.rollout.revision} is no worse than revision "
            f"{record['against']} on its judgment KPIs: firing kill switches and failing "
            "verify queries are not blamed on it (the cause is elsewhere)"
        )
        if timing:
            verdict.note = record["effect"]
    else:
        verdict.reasons += timing
        record["effect"] = "none: the timing checks count as they are"


def _not_judged(detail: str) -> Judged:
    return Judged(
        {
            "verdict": None,
            "mode": "none",
            "detail": detail,
            "effect": "none: the timing checks count as they are",
        }
    )


def check_quarantine(store: Store, verdict: "Verdict") -> None:
    """Is one of the revision's images quarantined?"""
    found = rules.matching(store.quarantine.active(), verdict.rollout.images, verdict.checked_at)
    for quarantine, image, why in found:
        jira = store.incidents.jira_of(quarantine.rollback_id)
        verdict.quarantined.append(
            {
                "image": image,
                "why": why,
                "rollback_id": quarantine.rollback_id,
                "jira": jira,
                "expires_at": quarantine.expires_at.isoformat(),
            }
        )
        verdict.reasons.append(
            f"{image} is quarantined: Backstop rolled it back (rollback "
            f"{quarantine.rollback_id}{f', {jira}' if jira else ''})"
        )
