"""The judgment step of a rollback: is the bad revision really worse than the revision
Backstop would return to? (the service's `judgment:` block, config/judgment.py)

For each KPI the same PromQL template is evaluated for the bad revision's pods and for the
target's (`$hash`), and the two samples are compared (core/judgment.py: Mann-Whitney U
with an allowed effect). Which samples depends on what is running:

- **side by side**, while the target revision's pods still serve (a canary, an Argo
  Rollout, a rolling update still overlapping): both revisions over the same recent
  window (the last `window`, from the rollout on);
- **before/after**, once they are gone: the bad revision since its rollout against the
  target over the equally long window just before the rollout. When the KPI was already
  getting worse inside that window (its second half confirmed worse than its first), the
  change began before the rollout; the bad revision is then compared with the second half
  alone, so only a further step at the rollout confirms it.

Every point of every series a query returns is one observation. A KPI whose queries fail
(Prometheus away, a bad expression) has no data: Backstop does not wait on Prometheus to
act, it asks a human (`inconclusive`).

The record keeps, per KPI, the points each side was judged on (`series`: seconds into its
own window and value, at most SERIES_POINTS a side, evenly thinned), so the dashboard, the
ticket and the snapshot can draw new against old on one time axis.
"""

import logging
import math
import re
from datetime import datetime, timedelta

from config.judgment import JudgmentKPI, JudgmentPolicy
from core.decisions import INCONCLUSIVE
from core.errors import PermanentError, TransientError
from core.integrations.prometheus import Prometheus
from core.judgment import Comparison, Limits, compare, overall
from core.models import Workload

log = logging.getLogger("backstop.judgment")

_PLACEHOLDER = re.compile(r"\$(hash|namespace|name)\b")
# The reason a rollback stops for when the new revision is no worse.
NOT_CAUSED = "not_caused_by_rollout"
# Points kept per side and KPI for drawing (the test itself uses every point).
SERIES_POINTS = 240

Point = tuple[datetime, float]


def consequence(mode: str, verdict: str) -> str | None:
    """The reason the rollback stops for, or None when it goes on."""
    if mode != "require" or verdict == "confirmed":
        return None
    return NOT_CAUSED if verdict == "not_confirmed" else INCONCLUSIVE


def render(query: str, workload: Workload, pod_hash: str) -> str:
    """The KPI's PromQL for one revision: `$hash`, `$namespace`, `$name` filled in,
    escaped for a PromQL string literal (the values come from the cluster)."""
    values = {"hash": pod_hash, "namespace": workload.namespace, "name": workload.name}
    return _PLACEHOLDER.sub(lambda m: _escape(values[m[1]]), query)


def judge(
    prometheus: Prometheus | None,
    policy: JudgmentPolicy,
    workload: Workload,
    *,
    bad_hash: str,
    target_hash: str,
    deployed_at: datetime,
    now: datetime,
) -> dict:
    """Judge the bad revision against the target on every KPI; the record (JSON): the
    overall verdict, a sentence, and per KPI how it was judged and what was found."""
    kpis: list[dict] = []
    away = ""
    for kpi in policy.kpis:
        if away:
            # Prometheus already failed: asking again would only add its timeout per query
            # (a gate must answer within its controller's webhook timeout).
            kpis.append(_skipped(kpi, away))
            continue
        found = _judge_kpi(
            prometheus, policy, kpi, workload, (bad_hash, target_hash), deployed_at, now
        )
        away = found.pop("_away", "")
        kpis.append(found)
    verdict = overall([k.pop("_comparison") for k in kpis])
    shown = "; ".join(f"{k['name']}: {k['verdict']}" for k in kpis)
    return {
        "verdict": verdict,
        "mode": policy.mode,
        "confidence": policy.confidence,
        "detail": f"{verdict} ({shown})",
        "kpis": kpis,
    }


def _judge_kpi(
    prometheus: Prometheus | None,
    policy: JudgmentPolicy,
    kpi: JudgmentKPI,
    workload: Workload,
    hashes: tuple[str, str],
    deployed_at: datetime,
    now: datetime,
) -> dict:
    limits = Limits(
        bad=kpi.bad,
        confidence=policy.confidence,
        relative=kpi.relative,
        absolute=kpi.absolute,
        min_samples=kpi.min_samples,
    )
    new_query, old_query = (render(kpi.query, workload, h) for h in hashes)
    start = max(deployed_at, now - policy.window)
    record: dict = {"name": kpi.name, "queries": {"new": new_query, "old": old_query}}
    try:
        new = _points(prometheus, new_query, start, now, policy.step)
        old = _points(prometheus, old_query, start, now, policy.step)
        old_start = start
        if len(old) >= kpi.min_samples:
            record["how"] = "side_by_side"
            comparison = compare(_values(new), _values(old), limits)
        else:
            old_start = deployed_at - (now - start)
            old = _points(prometheus, old_query, old_start, deployed_at, policy.step)
            record["how"] = "before_after"
            comparison = _after_trend(_values(new), _values(old), limits, record)
        end = old_start + (now - start)
        record["windows"] = {"new": _span(start, now), "old": _span(old_start, end)}
        record["series"] = {"new": _drawn(new, start), "old": _drawn(old, old_start)}
    except (TransientError, PermanentError) as exc:
        log.warning("judgment of %s: %s: %s", workload.key, kpi.name, exc)
        comparison = _no_data(f"Prometheus could not answer: {exc}")
        record["_away"] = str(exc)
    record.update(comparison.as_dict())
    record["verdict"], record["reason"] = comparison.verdict, comparison.reason
    record["_comparison"] = comparison
    return record


def _after_trend(new: list[float], old: list[float], limits: Limits, record: dict) -> Comparison:
    """Before/after: against the whole window before the rollout, or, when the KPI was
    already worsening inside it, against its second half only."""
    half = len(old) // 2
    if half >= limits.min_samples:
        trend = compare(old[half:], old[:half], limits)
        record["trend_before"] = trend.as_dict()
        if trend.verdict == "confirmed":
            record["baseline"] = "second half of the window before the rollout"
            return compare(new, old[half:], limits)
    record["baseline"] = "the window before the rollout"
    return compare(new, old, limits)


def _points(
    prometheus: Prometheus | None, expr: str, start: datetime, end: datetime, step: timedelta
) -> list[Point]:
    """Every finite point of every series in time order (a series per pod is one
    observation per pod and step). NaN (a ratio over no traffic: a revision whose pods are
    gone still exposes its counters) is no observation."""
    if prometheus is None:
        raise PermanentError("no Prometheus is configured (PROMETHEUS_URL)")
    if end <= start:
        return []
    series = prometheus.query_range(expr=expr, start=start, end=end, step=step.total_seconds())
    return sorted((t, v) for s in series for t, v in s.points if math.isfinite(v))


def _values(points: list[Point]) -> list[float]:
    return [v for _, v in points]


def _drawn(points: list[Point], start: datetime) -> list[list[float]]:
    """At most SERIES_POINTS of `points`, evenly spread, as [seconds into the window, value]."""
    if len(points) > SERIES_POINTS:
        last = len(points) - 1
        points = [points[round(i * last / (SERIES_POINTS - 1))] for i in range(SERIES_POINTS)]
    return [[round((t - start).total_seconds(), 3), v] for t, v in points]


def _skipped(kpi: JudgmentKPI, away: str) -> dict:
    comparison = _no_data(f"not asked: Prometheus could not answer an earlier KPI ({away})")
    record = {"name": kpi.name, **comparison.as_dict()}
    record["verdict"], record["reason"] = comparison.verdict, comparison.reason
    record["_comparison"] = comparison
    return record


def _no_data(reason: str) -> Comparison:
    return Comparison("nodata", 0, 0, None, None, None, None, None, None, reason)


def _span(start: datetime, end: datetime) -> dict:
    return {"start": start.isoformat(), "end": end.isoformat()}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
