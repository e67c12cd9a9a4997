"""Small two-series line charts drawn as inline SVG on the server: the dashboard's picture of
a judgment KPI, the new revision's points against the old one's, on one time axis.

The dashboard's Content-Security-Policy allows no script, so the chart is plain SVG; this
module computes its geometry (pure functions) and the template (judgment.html) draws it.
Points are `[seconds into the window, value]` pairs read back from Redis, so untrusted:
anything not a finite pair of numbers (or a negative time) is skipped, an empty series
draws nothing, a flat one sits mid-height, a short one also gets a dot per point (a single
point is no line), and values up to the largest float still scale without overflowing.
"""

import math
import sys
from dataclasses import dataclass, field

WIDTH, HEIGHT = 320, 120  # the viewBox; CSS scales it
LEFT, RIGHT, TOP, BOTTOM = 42, 8, 8, 18  # room for the axis labels
# The record holds at most 240 points a side; a damaged one is not read past this.
MAX_POINTS = 2_000
# Series this short also get a dot per point.
DOTS_UP_TO = 40
TICKS = 4  # about this many labels per axis
SERIES = ("new", "old")  # the judgment's two sides: the bad revision's, the target's
_BIGGEST = sys.float_info.max


@dataclass(frozen=True)
class Tick:
    """One axis label: where it sits (x for the time axis, y for the value axis)."""

    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: a polyline (and maybe dots) per series, the axes' ticks,
    the medians' heights."""

    width: int = WIDTH
    height: int = HEIGHT
    lines: dict[str, str] = field(default_factory=dict)  # series -> "x,y x,y ..."
    dots: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    x_ticks: tuple[Tick, ...] = ()
    y_ticks: tuple[Tick, ...] = ()
    medians: dict[str, float] = field(default_factory=dict)  # series -> y of its median

    left: int = LEFT
    top: int = TOP
    right: int = WIDTH - RIGHT  # the plot area's right edge (x)
    bottom: int = HEIGHT - BOTTOM  # the plot area's bottom edge (y)

    @property
    def empty(self) -> bool:
        """Whether no series has a point to draw."""
        return not any(self.lines.values())


def chart(series: object, medians: object = None) -> Chart:
    """The geometry of `series` ({"new": points, "old": points}; other keys are ignored);
    `medians` ({"new": x, "old": y}, optional) become dashed lines on the same scale."""
    # Only the two sides are drawn, so only they are read (the record is untrusted).
    given = series if isinstance(series, dict) else {}
    clean = {name: _points(given[name]) for name in SERIES if name in given}
    every = [p for points in clean.values() for p in points]
    if not every:
        return Chart()
    x_max = max(t for t, _ in every) or 1.0
    wanted = medians.items() if isinstance(medians, dict) else ()
    medians_clean = {str(k): float(v) for k, v in wanted if _number(v) and str(k) in clean}
    values = [v for _, v in every] + list(medians_clean.values())
    low, high = _value_range(min(values), max(values))
    # Halves keep every difference finite, even between -max and +max float.
    half_span = high / 2 - low / 2

    def x_of(t: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (t / x_max), 1)

    def y_of(v: float) -> float:
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v / 2 - low / 2) / half_span), 1)

    return Chart(
        lines={
            name: " ".join(f"{x_of(t)},{y_of(v)}" for t, v in points)
            for name, points in clean.items()
        },
        dots={
            name: [(x_of(t), y_of(v)) for t, v in points]
            for name, points in clean.items()
            if 0 < len(points) <= DOTS_UP_TO
        },
        x_ticks=tuple(Tick(x_of(t), f"{label} s") for t, label in ticks(0.0, x_max)),
        y_ticks=tuple(Tick(y_of(v), label) for v, label in ticks(low, high)),
        medians={name: y_of(v) for name, v in medians_clean.items()},
    )


def ticks(low: float, high: float, count: int = TICKS) -> list[tuple[float, str]]:
    """Round values between `low` and `high` (steps of 1, 2 or 5 times a power of ten,
    about `count` of them) with their labels, just precise enough to tell them apart;
    only the two ends when no round step fits (a span near the float limits)."""
    if not high > low:
        return [(low, _label(low, 3))]
    ends = [(low, _label(low, 3)), (high, _label(high, 3))]
    raw = (high / 2 - low / 2) / max(count - 1, 1) * 2  # inf past the float limits
    if not (math.isfinite(raw) and raw > 0):
        return ends
    power = 10.0 ** math.floor(math.log10(raw))
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    if not (math.isfinite(step) and step > 0):
        return ends
    first, last = math.ceil(low / step), math.floor(high / step)
    if not 0 < last - first + 1 <= 2 * count + 1:  # too fine for the floats at hand
        return ends
    magnitude = max(abs(low), abs(high))
    digits = min(17, max(3, math.ceil(math.log10(magnitude / step)) + 1)) if magnitude else 3
    return [(k * step, _label(k * step, digits)) for k in range(first, last + 1)]


def number(value: object) -> str:
    """A figure of the judgment's record as text: integers whole, other numbers to four
    significant digits, missing ones as a dash; anything else as it is (the template
    escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def judged_kpis(judgment: object) -> list[dict]:
    """The KPI entries of a judgment record that are records at all: a damaged record
    draws fewer KPIs, not an error page."""
    kpis = judgment.get("kpis") if isinstance(judgment, dict) else None
    return [kpi for kpi in kpis if isinstance(kpi, dict)] if isinstance(kpis, list) else []


def _value_range(low: float, high: float) -> tuple[float, float]:
    """The value axis: the values' range, or a band around a flat series (so it sits
    mid-height), never past the largest float."""
    if high / 2 - low / 2 > 0:
        return low, high
    pad = abs(high) * 0.1 if abs(high) > 1e-300 else 1.0
    return max(low - pad, -_BIGGEST), min(high + pad, _BIGGEST)


def _points(points: object) -> list[tuple[float, float]]:
    """Finite (t, v) pairs with t >= 0, in time order."""
    found = []
    for point in points[:MAX_POINTS] if isinstance(points, list) else []:
        if isinstance(point, list | tuple) and len(point) == 2 and all(map(_number, point)):
            t, v = float(point[0]), float(point[1])
            if t >= 0:
                found.append((t, v))
    return sorted(found)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _label(value: float, digits: int) -> str:
    text = f"{value:.{digits}g}"
    return "0" if text in ("-0", "0") else text
