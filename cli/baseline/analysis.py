"""A baseline: per KPI, per series (segment) and peak/off-peak, the distribution, a
proposed threshold and its false-positive rate; and the one threshold for the KPI's rule.

The rule's threshold is the most conservative proposal of the KPI (the highest, or the
lowest for a KPI that alerts on a drop): one rule per KPI keeps every segment's labels, so
a segment that appears later is still covered, and no segment would have fired more than
its own proposal did on the known-good history.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cli.baseline.history import History, aligned_windows
from cli.baseline.periods import OFF_PEAK, PEAK, PeakHours
from cli.baseline.spec import KpiSpec, Spec
from cli.baseline.stats import Distribution, describe
from cli.baseline.thresholds import (
    ABOVE,
    OPERATOR,
    Proposal,
    ThresholdPolicy,
    episode_starts,
    firing,
    per_week,
    propose,
)
from core.integrations.prometheus import Series


@dataclass(frozen=True)
class Row:
    """One series in one period: its distribution and the threshold it would want."""

    labels: dict[str, str]
    period: str
    distribution: Distribution
    threshold: float
    basis: str
    fp_rate: float  # fraction of this period's windows firing at `threshold`
    firings_per_week: float  # episodes starting in this period, per week of history
    rule_fp_rate: float  # the same at the rule's threshold
    rule_firings_per_week: float

    def as_dict(self) -> dict:
        """Plain values, for JSON."""
        return {
            "labels": self.labels,
            "period": self.period,
            **self.distribution.as_dict(),
            "threshold": self.threshold,
            "basis": self.basis,
            "fp_rate": self.fp_rate,
            "firings_per_week": self.firings_per_week,
            "rule_fp_rate": self.rule_fp_rate,
            "rule_firings_per_week": self.rule_firings_per_week,
        }


@dataclass(frozen=True)
class KpiBaseline:
    """One KPI: its queries, its rows, and the rule's threshold with its false positives."""

    kpi: KpiSpec
    history_expr: str
    rule_expr: str
    rows: list[Row] = field(default_factory=list)
    threshold: float | None = None
    fp_rate: float = 0.0
    firings_per_week: float = 0.0

    @property
    def operator(self) -> str:
        """The rule's comparison."""
        return OPERATOR[self.kpi.compares]

    def as_dict(self) -> dict:
        """Plain values, for JSON."""
        return {
            "name": self.kpi.name,
            "kind": self.kpi.kind,
            "direction": self.kpi.compares,
            "history_query": self.history_expr,
            "rule_expr": self.rule_expr,
            "threshold": self.threshold,
            "fp_rate": self.fp_rate,
            "firings_per_week": self.firings_per_week,
            "rows": [row.as_dict() for row in self.rows],
        }


@dataclass(frozen=True)
class Baseline:
    """Everything `backstop baseline` found for one service."""

    spec: Spec
    start: datetime  # the first window's start
    end: datetime  # the last window's end
    kpis: list[KpiBaseline]

    def as_dict(self) -> dict:
        """Plain values, for JSON."""
        return {
            "service": self.spec.service,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "window": self.spec.model_dump(mode="json")["window"],
            "for": self.spec.model_dump(mode="json", by_alias=True)["for"],
            "version": self.spec.version.model_dump() if self.spec.version else None,
            "peak": self.spec.peak.model_dump(),
            "kpis": [kpi.as_dict() for kpi in self.kpis],
        }


def build(spec: Spec, history: History) -> Baseline:
    """Read every KPI's history and baseline it."""
    step = spec.window.total_seconds()
    first, last = aligned_windows(history.start, history.end, step)
    period = history.period_seconds(step)
    kpis = [
        baseline_kpi(
            spec,
            kpi,
            history.windows(spec.expression(kpi, history=True), step),
            period_seconds=period,
        )
        for kpi in spec.kpis
    ]
    return Baseline(
        spec, datetime.fromtimestamp(first.timestamp() - step, first.tzinfo), last, kpis
    )


def baseline_kpi(
    spec: Spec, kpi: KpiSpec, series: Sequence[Series], *, period_seconds: float
) -> KpiBaseline:
    """Rows and the rule threshold of one KPI from its history (pure)."""
    history_expr = spec.expression(kpi, history=True)
    rule_expr = spec.expression(kpi, history=False)
    if not series:
        return KpiBaseline(kpi, history_expr, rule_expr)
    policy = spec.threshold.policy(kpi.threshold)
    peak = spec.peak.hours_model()
    step = spec.window.total_seconds()
    proposals = segment_proposals(series, policy, kpi.compares, peak, step)
    threshold = most_conservative(proposals, kpi.compares)
    rows = [
        _row(spec, kpi, item, name, points, proposal, threshold, period_seconds)
        for item, name, points, proposal in proposals
    ]
    fired = [_fired(spec, kpi, item.points, threshold) for item in series]
    total = sum(len(item.points) for item in series)
    episodes = sum(
        len(episode_starts(item.points, mask, step_seconds=step))
        for item, mask in zip(series, fired, strict=True)
    )
    return KpiBaseline(
        kpi,
        history_expr,
        rule_expr,
        rows,
        threshold,
        fp_rate=sum(sum(mask) for mask in fired) / total,
        firings_per_week=per_week(episodes, period_seconds),
    )


def segment_proposals(
    series: Sequence[Series], policy: ThresholdPolicy, direction: str, peak: PeakHours, step: float
) -> list[tuple[Series, str, list[tuple[datetime, float]], Proposal]]:
    """(series, period, its points, proposal) for every series in every period it has."""
    return [
        (item, name, points, propose([v for _, v in points], policy, direction))
        for item in series
        for name, points in split(item, peak, step).items()
    ]


def most_conservative(proposals: Sequence[tuple], direction: str) -> float:
    """The threshold no segment's proposal is beyond: the highest (lowest for BELOW)."""
    pick = max if direction == ABOVE else min
    return pick(proposal.threshold for *_, proposal in proposals)


def split(series: Series, peak: PeakHours, step: float) -> dict[str, list[tuple[datetime, float]]]:
    """The series' points by the period their window started in (peak first)."""
    periods: dict[str, list] = {PEAK: [], OFF_PEAK: []}
    for moment, value in series.points:
        start = datetime.fromtimestamp(moment.timestamp() - step, moment.tzinfo)
        periods[peak.period_of(start)].append((moment, value))
    return {name: points for name, points in periods.items() if points}


def _fired(spec: Spec, kpi: KpiSpec, points, threshold: float) -> list[bool]:
    return firing(
        points,
        threshold,
        OPERATOR[kpi.compares],
        step_seconds=spec.window.total_seconds(),
        hold_seconds=spec.for_.total_seconds(),
    )


def _row(spec, kpi, item: Series, name, points, proposal, threshold, period_seconds) -> Row:
    # False positives count on the whole series (a run may cross from peak into off-peak),
    # attributed to the period each firing evaluation or episode start falls in.
    step = spec.window.total_seconds()
    inside = {moment for moment, _ in points}

    def rates(at: float) -> tuple[float, float]:
        mask = _fired(spec, kpi, item.points, at)
        hits = sum(
            1
            for (moment, _), hot in zip(item.points, mask, strict=True)
            if hot and moment in inside
        )
        starts = episode_starts(item.points, mask, step_seconds=step)
        begun = sum(1 for index in starts if item.points[index][0] in inside)
        return hits / len(points), per_week(begun, period_seconds)

    fp_rate, weekly = rates(proposal.threshold)
    rule_fp_rate, rule_weekly = rates(threshold)
    return Row(
        labels=dict(item.labels),
        period=name,
        distribution=describe([value for _, value in points]),
        threshold=proposal.threshold,
        basis=proposal.basis,
        fp_rate=fp_rate,
        firings_per_week=weekly,
        rule_fp_rate=rule_fp_rate,
        rule_firings_per_week=rule_weekly,
    )
