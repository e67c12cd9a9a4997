"""The judgment drawn for the incident: one snapshot per judged KPI, the bad revision's
points against the target's (workers/snapshots.py renders it like the other graphs).

The points are the judgment's own (the rollback's record keeps at most 240 a side), so no
query is made. Both are drawn on the new revision's time axis: side by side they share it;
before/after, the old side's window (just before the rollout) is laid over the new one's,
as the test compared them, and the title says so. A KPI without points gives a graph
saying "no data", never an error.
"""

from datetime import datetime, timedelta

from core.integrations.prometheus import Series
from core.snapshots import Snapshot
from workers import snapshots as graphs

SIDES = {"new": "new revision (rolled back)", "old": "old revision (the target)"}
HOW = {
    "side_by_side": "side by side: both revisions over the same window",
    "before_after": "before/after: the window before the rollout laid over the one after it",
}


def judgment_snapshots(judgment: dict, *, now: datetime) -> list[Snapshot]:
    """A snapshot per KPI of `judgment` (the rollback's record); none when not judged."""
    return [_snapshot(kpi, now) for kpi in (judgment or {}).get("kpis", [])]


def _snapshot(kpi: dict, now: datetime) -> Snapshot:
    start = _start(kpi, now)
    series = [
        Series(
            {"revision": label},
            [(start + timedelta(seconds=t), v) for t, v in (kpi.get("series") or {}).get(side, [])],
        )
        for side, label in SIDES.items()
    ]
    last = max((p[0] for one in series for p in one.points), default=start)
    name = str(kpi.get("name", "KPI"))
    title = (
        f"Judgment: {name} ({kpi.get('verdict', '?')})\n"
        f"{HOW.get(str(kpi.get('how')), 'not compared')}"
    )
    png = graphs.render_png(
        series,
        title=title,
        unit="",
        threshold=None,
        markers=[],
        start=start,
        end=max(last, start + timedelta(seconds=1)),
    )
    points = sum(len(one.points) for one in series)
    expr = str((kpi.get("queries") or {}).get("new", ""))
    return Snapshot(graphs.new_id(), f"judgment: {name}", expr, png, graphs.to_csv(series), points)


def _start(kpi: dict, now: datetime) -> datetime:
    """The new revision's window start (where its seconds count from)."""
    text = ((kpi.get("windows") or {}).get("new") or {}).get("start")
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else now
    except ValueError:
        return now
