"""Thresholds with a buffer above the noise, and how often they would have fired.

A proposal is the most conservative of three candidates: a margin over a high quantile,
a multiple of the standard deviation over the mean, and an absolute floor. For a KPI that
alerts when it drops (throughput), the mirror image: a margin under a low quantile and a
multiple of the deviation under the mean, whichever is lower (never below zero).

A false positive is an evaluation on the known-good history at which the alert would have
been firing: the value beyond the threshold at this window and at every window of the
`for:` duration before it, as Prometheus requires before a pending alert fires.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from cli.baseline.stats import mean, quantile, stddev

ABOVE = "above"
BELOW = "below"
OPERATOR = {ABOVE: ">", BELOW: "<"}  # the comparison a rule makes for each direction
SIGNIFICANT_DIGITS = 3
WEEK_SECONDS = 7 * 86400


@dataclass(frozen=True)
class ThresholdPolicy:
    """How far above the noise a threshold goes."""

    quantile: float = 0.99  # the high quantile the margin applies to (1 - q for BELOW)
    margin: float = 0.25  # 0.25: 25% beyond that quantile
    sigmas: float = 3.0  # mean +- sigmas * standard deviation
    floor: float = 0.0  # ABOVE only: never propose less than this


@dataclass(frozen=True)
class Proposal:
    """A proposed threshold and which candidate decided it."""

    threshold: float
    basis: str  # "quantile", "sigmas" or "floor"


def propose(values: Sequence[float], policy: ThresholdPolicy, direction: str) -> Proposal:
    """The threshold for `values` under `policy`, rounded away from the noise."""
    centre, spread = mean(values), stddev(values)
    if direction == ABOVE:
        candidates = {
            "quantile": quantile(values, policy.quantile) * (1 + policy.margin),
            "sigmas": centre + policy.sigmas * spread,
            "floor": policy.floor,
        }
        basis = max(candidates, key=lambda name: candidates[name])
        return Proposal(round_away(candidates[basis], direction), basis)
    candidates = {
        "quantile": quantile(values, 1 - policy.quantile) * (1 - policy.margin),
        "sigmas": centre - policy.sigmas * spread,
    }
    basis = min(candidates, key=lambda name: candidates[name])
    return Proposal(round_away(max(candidates[basis], 0.0), direction), basis)


def round_away(value: float, direction: str) -> float:
    """Round to SIGNIFICANT_DIGITS, up for ABOVE and down for BELOW: never into the noise."""
    if value == 0 or not math.isfinite(value):
        return value
    exact = Decimal(repr(value))
    unit = Decimal(1).scaleb(exact.adjusted() - SIGNIFICANT_DIGITS + 1)
    rounding = ROUND_CEILING if direction == ABOVE else ROUND_FLOOR
    return float(exact.quantize(unit, rounding=rounding))


def beyond(value: float, threshold: float, op: str) -> bool:
    """Would the rule's comparison `value <op> threshold` hold (op: >, >=, <, <=)?"""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    raise ValueError(f"unsupported comparison {op!r}")


def windows_to_fire(hold_seconds: float, step_seconds: float) -> int:
    """Consecutive evaluations, `step` apart, beyond the threshold before the alert fires.

    Pending starts at the first one; it fires once `for:` has elapsed since, so with a step
    of one window and for: 10m over 5m windows that is 3 (at 0, 5 and 10 minutes).
    """
    return math.ceil(hold_seconds / step_seconds) + 1


def firing(
    points: Sequence[tuple[datetime, float]],
    threshold: float,
    op: str,
    *,
    step_seconds: float,
    hold_seconds: float,
) -> list[bool]:
    """For each point (time-ordered), whether the alert would be firing at it.

    A gap in the history (a window without a value) breaks the run, as it resets a pending
    alert.
    """
    needed = windows_to_fire(hold_seconds, step_seconds)
    result, run = [], 0
    for index, (_, value) in enumerate(points):
        if not beyond(value, threshold, op):
            run = 0
        elif _follows(points, index, step_seconds):
            run += 1
        else:
            run = 1
        result.append(run >= needed)
    return result


def episode_starts(
    points: Sequence[tuple[datetime, float]], fired: Sequence[bool], *, step_seconds: float
) -> list[int]:
    """Indexes of the points where a firing episode begins (a notification would go out)."""
    return [
        index
        for index, is_firing in enumerate(fired)
        if is_firing and not (_follows(points, index, step_seconds) and fired[index - 1])
    ]


def _follows(points: Sequence[tuple[datetime, float]], index: int, step_seconds: float) -> bool:
    # True when the point is exactly one step after the previous one (no gap between).
    return index > 0 and (points[index][0] - points[index - 1][0]).total_seconds() == step_seconds


def per_week(count: int, period_seconds: float) -> float:
    """`count` events over a history of `period_seconds`, as a weekly rate."""
    return count * WEEK_SECONDS / period_seconds if period_seconds > 0 else 0.0
