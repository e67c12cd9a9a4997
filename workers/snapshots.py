"""Metric snapshots for incidents: Prometheus range queries drawn as PNG graphs, plus raw CSV.

One snapshot per verify query and per kill-switch alert expression, over a window from before
the deployment to now. A TransientError or PermanentError from Prometheus for one query becomes
that snapshot's `error` and a PNG saying "query failed: …"; the other snapshots are unaffected.
Images are served through signed, expiring links (core.snapshots), so PagerDuty and
Jira can fetch them without Backstop credentials.
"""

import csv
import io
import itertools
import math
import re
import secrets
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import IntegrationError
from core.integrations.prometheus import Series, step_for
from core.snapshots import MAX_BYTES, Snapshot

LEGEND_CHARS = 30  # fits the legend column at its font size
LEGEND_SERIES = 8  # more series than this are drawn but summed up as "+N more" in the legend

# 10x5 inches at 100 dpi: a 1000x500 PNG, legible inline in a Jira ticket. Fixed margins keep
# that size exact and tell where the plot area is, to keep marker badges apart.
WIDTH, HEIGHT, DPI = 10, 5, 100
LEFT, RIGHT, BOTTOM, TOP = 0.09, 0.72, 0.13, 0.81
MARKER_BADGE_PX = 15  # the width of one numbered marker badge
MARKER_COLORS = ("#333333", "#8e44ad", "#d35400", "#16a085")
THRESHOLD_COLOR = "#c0392b"
_CSV_HEADER = b"timestamp,series,value\n"
_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0,
           "handlelength": 1.8, "fontsize": 8.5, "frameon": False}  # fmt: skip

# A trailing `<op> [bool] <number>` of an alert expression: the threshold the rule compares to.
_TRAILING_COMPARISON = re.compile(
    r"(?P<expr>.+?)\s*(?P<op>[<>]=?|[=!]=)\s*(?:bool\s+)?"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*",
    re.DOTALL,
)
_LOOSER_THAN_COMPARISON = re.compile(r"\b(?:and|or|unless)\b", re.IGNORECASE)
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`")
_STRING_OR_SPACE = re.compile(f"({_STRING.pattern})|\\s+")
# An alert fires on the opposite of what a verify query requires for health.
_HEALTHY = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}


@dataclass(frozen=True)
class Marker:
    """A moment to mark on every graph: deployment start, alert start, rollback, verification."""

    label: str
    at: datetime


@dataclass(frozen=True)
class SnapshotQuery:
    """What to graph; `comparison` and `threshold` say what a healthy value is (`<` 0.05)."""

    name: str
    expr: str
    threshold: float | None = None
    comparison: str | None = None
    unit: str = ""


# -- which queries -------------------------------------------------------------------------


def queries_for(verify_queries, alert_exprs: list[tuple[str, str]]) -> list[SnapshotQuery]:
    """The service's verify queries, then one per kill-switch alert (alertname, expr), each
    expression once."""
    queries = [
        SnapshotQuery(q.name, q.query, q.threshold, q.comparison, q.unit) for q in verify_queries
    ]
    queries += [_alert_query(name, expr) for name, expr in alert_exprs if expr and expr.strip()]
    unique: dict[str, SnapshotQuery] = {}
    for query in queries:
        unique.setdefault(_canonical(query.expr), query)
    return list(unique.values())


def _alert_query(alertname: str, expr: str) -> SnapshotQuery:
    """Graph an alert rule's value rather than its firing condition: `x > 0.05` becomes `x`
    with threshold 0.05, healthy when `<=` it."""
    # Graphing `x > 0.05` itself would show only the firing points, none from before.
    match = _TRAILING_COMPARISON.fullmatch(expr.strip())
    if not match or _LOOSER_THAN_COMPARISON.search(_top_level(match["expr"])):
        return SnapshotQuery(alertname, expr.strip())
    return SnapshotQuery(alertname, match["expr"], float(match["value"]), _HEALTHY[match["op"]])


def _top_level(expr: str) -> str:
    """`expr` without string literals and bracketed parts: the operators that bind last."""
    kept, depth = [], 0
    for char in _STRING.sub('""', expr):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if depth == 0:
            kept.append(char if char not in ")]}" else " ")
    return "".join(kept)


def _canonical(expr: str) -> str:
    # Prometheus reformats rule expressions in generatorURL: compare without the whitespace
    # outside string literals.
    return _STRING_OR_SPACE.sub(lambda m: m[1] or "", expr)


# -- capture -------------------------------------------------------------------------------


def capture(
    prometheus,
    queries: list[SnapshotQuery],
    *,
    start: datetime,
    end: datetime,
    markers: list[Marker],
) -> list[Snapshot]:
    """One snapshot per query over [start, end]; a query that fails gives a snapshot saying so."""
    return [_capture(prometheus, query, start=start, end=end, markers=markers) for query in queries]


POINTS_PER_SERIES = 1000


def _capture(prometheus, query: SnapshotQuery, *, start, end, markers) -> Snapshot:
    style = {
        "title": _title(query),
        "unit": query.unit,
        "threshold": query.threshold,
        "markers": markers,
        "start": start,
        "end": end,
    }
    try:
        # About a point per pixel of the graph: readable data, a CSV of tens of kilobytes per
        # series, and always within Prometheus's 11,000 points per series.
        window = (end - start).total_seconds()
        step = max(1.0, math.ceil(window / POINTS_PER_SERIES), step_for(start, end))
        series = prometheus.query_range(expr=query.expr, start=start, end=end, step=step)
    except IntegrationError as exc:
        png = _render([], notice=f"query failed: {exc}", **style)
        return Snapshot(new_id(), query.name, query.expr, png, _CSV_HEADER, 0, error=str(exc))
    png = render_png(series, **style)
    budget = MAX_BYTES - len(png) - len(query.name.encode()) - len(query.expr.encode())
    data, kept = _bounded_csv(series, budget)
    error = ""
    if kept < len(series):
        limit = f"{MAX_BYTES // 2**20} MiB"
        error = f"the CSV holds {kept} of {len(series)} series: snapshots are limited to {limit}"
    points = sum(len(one.points) for one in series)
    return Snapshot(new_id(), query.name, query.expr, png, data, points, error)


def _title(query: SnapshotQuery) -> str:
    if query.threshold is None:
        return f"{query.name}\n{query.expr}"
    healthy = f"{query.comparison or ''} {query.threshold:g} {query.unit}".strip()
    return f"{query.name} (healthy: {healthy})\n{query.expr}"


def new_id() -> str:
    """A random, unguessable, URL-safe snapshot id."""
    return secrets.token_urlsafe(16)


# -- CSV -----------------------------------------------------------------------------------


def to_csv(series: list[Series]) -> bytes:
    """The points as CSV: timestamp (ISO 8601, UTC), series (its telling labels), value."""
    return _bounded_csv(series, math.inf)[0]


def _bounded_csv(series: list[Series], budget: float) -> tuple[bytes, int]:
    """CSV of whole series, in order, while it fits in `budget` bytes; and how many fit."""
    chunks, size = [_CSV_HEADER], len(_CSV_HEADER)
    for kept, (one, label) in enumerate(zip(series, _series_labels(series), strict=True)):
        rows = _csv_rows(one, label)
        if size + len(rows) > budget:
            return b"".join(chunks), kept
        chunks.append(rows)
        size += len(rows)
    return b"".join(chunks), len(series)


def _csv_rows(series: Series, label: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows((_iso(at), label, repr(value)) for at, value in series.points)
    return buffer.getvalue().encode()


def _iso(moment: datetime) -> str:
    # Prometheus timestamps have millisecond precision.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _series_labels(series: list[Series]) -> list[str]:
    """A short name per series: the labels that tell them apart (all but __name__ for one)."""
    names = {name for one in series for name in one.labels}
    telling = {name for name in names if len({one.labels.get(name) for one in series}) > 1}
    shown = sorted(telling or names - {"__name__"})
    return [
        ", ".join(f"{name}={one.labels[name]}" for name in shown if name in one.labels) or "{}"
        for one in series
    ]


# -- PNG -----------------------------------------------------------------------------------


def render_png(
    series: list[Series],
    *,
    title: str,
    unit: str,
    threshold: float | None,
    markers: list[Marker],
    start: datetime,
    end: datetime,
) -> bytes:
    """A 1000x500 PNG of `series` over [start, end] with the threshold and labelled markers."""
    has_data = any(math.isfinite(value) for one in series for _, value in one.points)
    return _render(
        series,
        title=title,
        unit=unit,
        threshold=threshold,
        markers=markers,
        start=start,
        end=end,
        notice="" if has_data else "no data",
    )


def _render(series, *, title, unit, threshold, markers, start, end, notice) -> bytes:
    if end <= start:
        raise ValueError("end must be after start")
    figure, axes = new_figure()
    handles = _plot_series(axes, series)
    if threshold is not None:
        label = f"threshold {threshold:g} {unit}".strip()
        handles.append(
            axes.axhline(threshold, color=THRESHOLD_COLOR, linestyle="--", lw=1.5, label=label)
        )
    _style_axes(axes, unit=unit, start=start, end=end)
    if _lowest(series, threshold) >= 0:
        axes.set_ylim(bottom=0)  # rates, ratios and latencies read best from zero
    handles += _draw_markers(axes, markers, start=start, end=end)
    return finish(figure, axes, handles, title=title, footer=_window(start, end), notice=notice)


def new_figure():
    """A 1000x500 figure on its own Agg canvas and its axes, at the graphs' fixed margins."""
    # Imported here: the receiver imports this module for signed links, and matplotlib would
    # add about 40 MB to every web worker.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Titles, legends and notices are untrusted text: a `$x^$` must print, not fail mathtext.
    matplotlib.rcParams["text.parse_math"] = False
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    # An explicit Agg canvas: no display needed, and no pyplot global state shared by threads.
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=LEFT, right=RIGHT, bottom=BOTTOM, top=TOP)
    return figure, figure.add_subplot()


def finish(figure, axes, handles: list, *, title: str, footer: str, notice: str) -> bytes:
    """The legend beside the plot, the title (3 lines at most), the footer and a notice
    across the plot ("no data"); the PNG."""
    if handles:
        axes.legend(handles=handles, **_LEGEND)
    lines = [part for line in title.splitlines() for part in textwrap.wrap(line, 120)]
    figure.suptitle(
        "\n".join(lines[:3]), x=LEFT, y=0.98, ha="left", va="top", fontsize=11, linespacing=1.4
    )
    figure.text(0.99, 0.015, footer, ha="right", fontsize=8, color="gray")
    if notice:
        text, style = textwrap.fill(notice[:400], 60), {"fontsize": 14, "color": "#555555"}
        axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", **style)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plot_series(axes, series: list[Series]) -> list:
    """Draw every series; return the legend handles (at most LEGEND_SERIES, then "+N more")."""
    handles = []
    width = 1.5 if len(series) <= LEGEND_SERIES else 1.0
    for one, label in zip(series, _series_labels(series), strict=True):
        times, values = _with_gaps(one.points)
        # A dot per point when there are few, or a single point would not show at all.
        marker = "." if len(one.points) <= 60 else None
        (line,) = axes.plot(
            times, values, lw=width, marker=marker, label=_shorten(label, LEGEND_CHARS)
        )
        handles.append(line)
    if len(handles) > LEGEND_SERIES:
        more = len(handles) - LEGEND_SERIES
        (summary,) = axes.plot([], [], linestyle="none", label=f"+{more} more series")
        handles = [*handles[:LEGEND_SERIES], summary]
    return handles


def _with_gaps(points: list[tuple[datetime, float]]) -> tuple[list, list]:
    """Times and values with a NaN where the series was absent, so its line breaks there."""
    if len(points) < 2:
        return [at for at, _ in points], [_finite(value) for _, value in points]
    step = min(b - a for (a, _), (b, _) in itertools.pairwise(points))
    times, values = [points[0][0]], [_finite(points[0][1])]
    for (before, _), (at, value) in itertools.pairwise(points):
        if at - before > step * 1.5:
            times.append(before + step)
            values.append(math.nan)
        times.append(at)
        values.append(_finite(value))
    return times, values


def _finite(value: float) -> float:
    # ±Inf (a division by zero in a ratio) would squash every other line flat.
    return value if math.isfinite(value) else math.nan


def _lowest(series: list[Series], threshold: float | None) -> float:
    values = [value for one in series for _, value in one.points if math.isfinite(value)]
    if threshold is not None:
        values.append(threshold)
    return min(values, default=-math.inf)


def _style_axes(axes, *, unit: str, start: datetime, end: datetime) -> None:
    from matplotlib import dates

    axes.set_xlim(start, end)
    axes.xaxis.set_major_locator(dates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10))
    axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M", tz=UTC))
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel(unit or "value")
    # Plain numbers: an offset or a "1e-3" above the axis is easy to miss in a ticket.
    axes.ticklabel_format(axis="y", style="plain", useOffset=False)
    axes.grid(True, color="#e0e0e0", lw=0.8)


def _draw_markers(axes, markers: list[Marker], *, start: datetime, end: datetime) -> list:
    """Dotted vertical lines with a numbered badge above the plot; return their legend handles."""
    # Names and times go in the legend: written on the plot they would hide the very data the
    # markers point at, since alert and rollback are seconds apart.
    ordered = sorted(markers, key=lambda m: m.at)
    span = (end - start).total_seconds()
    px = 1 / (WIDTH * DPI * (RIGHT - LEFT))  # one pixel, as a fraction of the plot width
    handles, free = [], 1.0  # badges are spread leftwards from the latest; `free` is the room
    for number, marker in reversed(list(enumerate(ordered, 1))):
        color = MARKER_COLORS[(number - 1) % len(MARKER_COLORS)]
        label = f"{number}  {marker.label} {marker.at.astimezone(UTC):%H:%M:%S}"
        handles.append(axes.axvline(marker.at, color=color, linestyle=":", lw=2, label=label))
        position = (marker.at - start).total_seconds() / span
        if not 0 <= position <= 1:
            continue  # outside the window: listed in the legend only
        x = min(position, free)
        axes.text(
            x,
            1.01,
            str(number),
            transform=axes.transAxes,
            ha="center",
            va="bottom",
            fontsize=8,
            color="white",
            bbox={"boxstyle": "circle,pad=0.2", "fc": color, "ec": "none"},
        )
        free = x - MARKER_BADGE_PX * px
    return handles[::-1]


def _window(start: datetime, end: datetime) -> str:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M} to {until} UTC"


def _shorten(text: str, limit: int) -> str:
    # Cut from the middle: what tells series apart is often at the end (a pod name's suffix).
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]
