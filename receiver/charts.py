"""Small two-series line charts drawn as inline SVG on the server: the dashboard's picture of
a judgment KPI, the new revision's points against the old one's, on one time axis.

The dashboard's Content-Security-Policy allows no script, so the chart is plain SVG; this
module computes its geometry (pure functions) and the template draws it. Points are
`[seconds into the window, value]` pairs read back from Redis: anything not a finite pair
of numbers is skipped, an empty series draws nothing, a flat one sits mid-height.
"""

import math
from dataclasses import dataclass, field

WIDTH, HEIGHT = 320, 120  # the viewBox; CSS scales it
LEFT, RIGHT, TOP, BOTTOM = 42, 8, 8, 18  # room for the axis labels


@dataclass(frozen=True)
class Chart:
    """What the template draws: a polyline per series, the axis labels, the medians."""

    width: int = WIDTH
    height: int = HEIGHT
    lines: dict[str, str] = field(default_factory=dict)  # series -> "x,y x,y ..."
    y_labels: tuple[str, str] = ("", "")  # top, bottom
    x_label: str = ""
    medians: dict[str, float] = field(default_factory=dict)  # series -> y of its median

    @property
    def empty(self) -> bool:
        return not any(self.lines.values())


def chart(series: dict, medians: dict | None = None) -> Chart:
    """The geometry of `series` ({"new": points, "old": points}); `medians` ({"new": x,
    "old": y}, optional) become dashed lines."""
    clean = {name: _points(points) for name, points in (series or {}).items()}
    every = [p for points in clean.values() for p in points]
    if not every:
        return Chart()
    x_max = max(t for t, _ in every) or 1.0
    values = [v for _, v in every]
    medians_clean = {k: float(v) for k, v in (medians or {}).items() if _number(v) and k in clean}
    values += list(medians_clean.values())
    low, high = min(values), max(values)
    if high == low:  # a flat series: give it a band to sit in
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad

    def x_of(t: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (t / x_max), 1)

    def y_of(v: float) -> float:
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v - low) / (high - low)), 1)

    lines = {
        name: " ".join(f"{x_of(t)},{y_of(v)}" for t, v in points) for name, points in clean.items()
    }
    return Chart(
        lines=lines,
        y_labels=(_label(high), _label(low)),
        x_label=f"{x_max:g} s",
        medians={name: y_of(v) for name, v in medians_clean.items()},
    )


def _points(points) -> list[tuple[float, float]]:
    """Finite (t, v) pairs with t >= 0, in time order."""
    found = []
    for point in points if isinstance(points, list) else []:
        if isinstance(point, list | tuple) and len(point) == 2 and all(map(_number, point)):
            t, v = float(point[0]), float(point[1])
            if t >= 0:
                found.append((t, v))
    return sorted(found)


def _number(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e300  # keeps (high - low) finite
    )


def _label(value: float) -> str:
    return f"{value:.3g}"
