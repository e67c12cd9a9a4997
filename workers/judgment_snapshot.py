"""The judgment drawn for the incident: one snapshot per judged KPI, the bad revision's
points against the target's on one axis, with a CSV of both (workers/snapshots.py draws
the figure's frame, legend, title and notice, and writes the CSV, as for its own graphs).

The points are the judgment's own (the rollback's record keeps at most 240 a side, each
`[seconds into its side's window, value]`), so no query is made. The x axis is those
seconds: side by side both sides share one window; before/after the window before the
rollout is laid over the one after it, as the test compared them, and the subtitle says
which. The CSV gives every point its real time (its side's window start plus its
seconds). A KPI without points (Prometheus failed: `nodata`) gives a graph saying so.

The record came back from Redis and its names and reasons from the policy and Prometheus:
anything not a finite number where one is expected is left out, never an error.
"""

import itertools
import math
from datetime import UTC, datetime, timedelta

from core.integrations.prometheus import Series
from core.records import Decision, Rollback
from core.snapshots import Snapshot
from workers import snapshots as graphs

COLORS = {"new": "#c0392b", "old": "#2471a3"}
HOW = {
    "side_by_side": "side by side: both revisions over the same window",
    "before_after": "before/after: the window after the rollout laid over the one before it",
}
# How core/judging.py names the usual before/after baseline; any other is a part of it.
WHOLE_BASELINE = "the window before the rollout"
HASH_CHARS = 16  # a pod-template-hash is 10 characters; a longer value is cut in the legend
# No window is a year long; a larger offset (a damaged record) could not even be a date.
MAX_SECONDS = 366 * 86400.0
DOTS_UP_TO = 60  # a dot per point when there are few, or a single point would not show


def sides(rollback: Rollback, decision: Decision | None) -> dict[str, str]:
    """The legend's names of the two revisions: the bad one by its pod hash when the watcher
    recorded it (else its revision), the target by its revision."""
    rollout = decision.rollout if decision else None
    bad_hash = (
        rollout.template_hash if rollout and rollout.revision == rollback.bad_revision else ""
    )
    new = f"hash {bad_hash[:HASH_CHARS]}" if bad_hash else f"revision {rollback.bad_revision}"
    old = f"revision {rollback.target_revision}" if rollback.target_revision else "the target"
    return {"new": f"new revision ({new})", "old": f"old revision ({old})"}


def judgment_snapshots(
    judgment: dict, *, now: datetime, names: dict[str, str] | None = None
) -> list[Snapshot]:
    """A snapshot per KPI of `judgment` (the rollback's record), the sides named by `names`
    ({"new": ..., "old": ...}, from `sides`); none when it was not judged."""
    kpis = judgment.get("kpis") if isinstance(judgment, dict) else None
    if not isinstance(kpis, list):
        return []
    names = names or {"new": "new revision", "old": "old revision"}
    return [_snapshot(kpi, names, now) for kpi in kpis if isinstance(kpi, dict)]


def _snapshot(kpi: dict, names: dict[str, str], now: datetime) -> Snapshot:
    points = {side: _points(kpi, side) for side in ("new", "old")}
    figure, axes = graphs.new_figure()
    handles, lowest = [], math.inf
    for side, drawn in points.items():
        if drawn:
            seconds, values = zip(*drawn, strict=True)
            # Several pods give several points per step: joined, they would zigzag.
            joined = all(a < b for a, b in itertools.pairwise(seconds))
            dots = "." if len(drawn) <= DOTS_UP_TO or not joined else None
            style = {"lw": 1.5} if joined else {"linestyle": "none"}
            (line,) = axes.plot(
                seconds, values, color=COLORS[side], marker=dots, label=names[side], **style
            )
            handles.append(line)
            lowest = min(lowest, *values)
        median = _number(kpi.get(f"median_{side}"))
        if median is not None:
            label = f"median {side}: {median:.4g}"
            handles.append(axes.axhline(median, color=COLORS[side], ls="--", lw=1, label=label))
            lowest = min(lowest, median)
    last = max((t for drawn in points.values() for t, _ in drawn), default=0.0)
    axes.set_xlim(0, max(last, _length(kpi), 1.0))
    if lowest >= 0:
        axes.set_ylim(bottom=0)  # rates, ratios and latencies read best from zero
    axes.set_xlabel("seconds into the window")
    axes.set_ylabel("value")
    axes.ticklabel_format(axis="y", style="plain", useOffset=False)
    axes.grid(True, color="#e0e0e0", lw=0.8)
    name = str(kpi.get("name") or "KPI")
    title = f"Judgment: {name} — {kpi.get('verdict') or 'not judged'}\n{_subtitle(kpi)}"
    reason = kpi.get("reason") or "no points were recorded"
    notice = "" if any(points.values()) else f"no data: {reason}"
    png = graphs.finish(figure, axes, handles, title=title, footer=_footer(kpi), notice=notice)
    series = [
        Series(
            {"side": names[side]},
            [(_start(kpi, side, now) + timedelta(seconds=t), v) for t, v in drawn],
        )
        for side, drawn in points.items()
    ]
    queries = kpi.get("queries")
    expr = str(queries.get("new") or "") if isinstance(queries, dict) else ""
    count = sum(len(drawn) for drawn in points.values())
    return Snapshot(graphs.new_id(), f"judgment: {name}", expr, png, graphs.to_csv(series), count)


def _subtitle(kpi: dict) -> str:
    """How the KPI was compared, against what, and the numbers behind its verdict."""
    how = HOW.get(str(kpi.get("how")), "not compared")
    baseline = kpi.get("baseline")
    if kpi.get("how") == "before_after" and baseline and baseline != WHOLE_BASELINE:
        how = f"before/after (baseline: {baseline}: a trend had begun before the rollout)"
    numbers = [
        f"{label} {_shown(kpi.get(key))}"
        for label, key in (("p", "p_value"), ("shift", "shift"), ("allowed", "allowed"))
    ]
    sizes = f"points {_shown(kpi.get('n_new'))} new / {_shown(kpi.get('n_old'))} old"
    return f"{how}\n{', '.join([*numbers, sizes])}"


def _footer(kpi: dict) -> str:
    """Each side's window in UTC (before/after, two different windows)."""
    spans = []
    for side in ("new", "old"):
        start, end = (_moment(_window(kpi, side).get(edge)) for edge in ("start", "end"))
        if start and end:
            spans.append(f"{side}: {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC")
    return "; ".join(spans) or "windows not recorded"


def _length(kpi: dict) -> float:
    """The new side's window in seconds (0 when not recorded)."""
    start, end = (_moment(_window(kpi, "new").get(edge)) for edge in ("start", "end"))
    return (end - start).total_seconds() if start and end else 0.0


def _points(kpi: dict, side: str) -> list[tuple[float, float]]:
    """The side's `[seconds, value]` pairs that are pairs of finite numbers, in range."""
    series = kpi.get("series")
    raw = series.get(side) if isinstance(series, dict) else None
    if not isinstance(raw, list):
        return []
    pairs = [p for p in raw if isinstance(p, list | tuple) and len(p) == 2]
    numbers = [(_number(t), _number(v)) for t, v in pairs]
    return [(t, v) for t, v in numbers if t is not None and 0 <= t <= MAX_SECONDS and v is not None]


def _start(kpi: dict, side: str, now: datetime) -> datetime:
    """Where the side's seconds count from: its window's start (else the new side's, else
    `now`, for a record without windows)."""
    own = _moment(_window(kpi, side).get("start"))
    return own or _moment(_window(kpi, "new").get("start")) or now


def _window(kpi: dict, side: str) -> dict:
    windows = kpi.get("windows")
    window = windows.get(side) if isinstance(windows, dict) else None
    return window if isinstance(window, dict) else {}


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _number(value: object) -> float | None:
    """`value` when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _shown(value: object) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.4g}"
