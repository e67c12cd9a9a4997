"""Distributions of KPI values: quantiles (linear interpolation), mean, standard deviation."""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` by linear interpolation between order statistics.

    The definition numpy and R call type 7 (`statistics.quantiles(method="inclusive")`):
    position q*(n-1) in the sorted values, so q=0 is the minimum and q=1 the maximum.
    """
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be within [0, 1]")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (math.fsum, so the order of values does not matter)."""
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stddev(values: Sequence[float]) -> float:
    """The population standard deviation: the spread of the history itself, not an estimate."""
    centre = mean(values)
    return math.sqrt(math.fsum((value - centre) ** 2 for value in values) / len(values))


@dataclass(frozen=True)
class Distribution:
    """Summary of one KPI's values over alert windows."""

    n: int
    mean: float
    stddev: float
    min: float
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict:
        """Plain values, for JSON."""
        return asdict(self)


def describe(values: Sequence[float]) -> Distribution:
    """Count, mean, deviation and quantiles of `values` (at least one)."""
    return Distribution(
        n=len(values),
        mean=mean(values),
        stddev=stddev(values),
        min=min(values),
        p50=quantile(values, 0.50),
        p95=quantile(values, 0.95),
        p99=quantile(values, 0.99),
        max=max(values),
    )
