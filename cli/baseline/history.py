"""The known-good history from Prometheus: one value per alert window, windows end to end.

Windows are aligned to multiples of the step in Unix time (so two runs over the same
period see the same windows) and lie wholly inside [start, end]: the first ends one step
after the aligned start. Long ranges are read in chunks (Prometheus answers at most 11,000
points per series). NaN and infinite values (a ratio of no traffic) are dropped: a rule
comparing them never fires, so they are gaps, not evaluations.
"""

import math
from datetime import UTC, datetime, timedelta

from config.durations import format_duration
from core.integrations.prometheus import Prometheus, Series


def aligned_windows(start: datetime, end: datetime, step: float) -> tuple[datetime, datetime]:
    """The end of the first and of the last whole window of `step` seconds in [start, end]."""
    first = math.ceil(start.timestamp() / step) * step + step
    last = math.floor(end.timestamp() / step) * step
    if last < first:
        raise ValueError(f"the period {start}..{end} holds no whole window of {step:g}s")
    return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)


def finite(series: Series) -> Series:
    """The series without NaN or infinite points."""
    return Series(series.labels, [(t, v) for t, v in series.points if math.isfinite(v)])


class History:
    """Reads of one Prometheus over one period."""

    def __init__(self, prometheus: Prometheus, start: datetime, end: datetime):
        self.prometheus = prometheus
        self.start = start
        self.end = end

    def windows(self, expr: str, step: float) -> list[Series]:
        """`expr` evaluated at the end of each window; series with no value left out."""
        first, last = aligned_windows(self.start, self.end, step)
        found = self.prometheus.query_range_chunked(expr=expr, start=first, end=last, step=step)
        kept = [finite(series) for series in found]
        return [series for series in kept if series.points]

    def period_seconds(self, step: float) -> float:
        """The length the windows cover (for rates per week)."""
        first, last = aligned_windows(self.start, self.end, step)
        return (last - first).total_seconds() + step

    def carries(self, metric: str, matchers: str, label: str) -> bool:
        """Whether any series of `metric` (with `matchers`) had `label` set in the period."""
        inner = ",".join(part for part in (matchers, f'{label}!=""') if part)
        lookback = format_duration(timedelta(seconds=int((self.end - self.start).total_seconds())))
        expr = f"count(present_over_time({metric}{{{inner}}}[{lookback}]))"
        return bool(self.prometheus.query(expr=expr, at=self.end))
