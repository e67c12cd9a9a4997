"""The statistics that judge a new revision against the old one, KPI by KPI (after Kayenta's
NetflixACAJudge): is the new revision really worse, or would a rollback change nothing?

`compare(new, old, limits)` takes one KPI's observations for each revision and returns a
`Comparison`; `overall(comparisons)` folds the KPIs into one verdict. The rules:

- **Data.** Non-finite values are dropped first (a rate ratio of 0/0 is NaN, x/0 is
  infinite: no observation, not an extreme one). Fewer than `min_samples` points left on
  either side: `nodata`.
- **Test.** A one-sided Mann-Whitney U test (`scipy.stats.mannwhitneyu`, method "auto")
  of "the new revision's values are stochastically higher" (`bad="higher"`, alternative
  "greater") or "lower" (`bad="lower"`, alternative "less"), significant when
  p < 1 - confidence. `u` is the new sample's U: the pairs (new, old) where new is the
  larger, a tie counting one half. "auto" is exact only when a side has at most 8 points
  and there are no ties; otherwise the normal approximation with scipy's tie correction
  (the variance shrinks for tied ranks) and a continuity correction. Tied values share
  their mean rank, so all values equal on both sides give p = 1.
- **Outliers.** The test uses ranks, not values: a single point of 1e9 counts as much as
  one just above the rest, so a few outliers cannot drive the verdict. Nothing is trimmed.
- **Effect.** `shift` is the Hodges-Lehmann estimate of new - old, the median of all the
  pairwise differences new_i - old_j (robust to outliers too). Above 2,000 points a side
  it is computed on 2,000 evenly spaced order statistics of that side (at most 4 million
  differences), which moves it by well under the spacing of those quantiles; the test
  itself always uses every point. `allowed` is the larger of `relative * |median_old|`
  and `absolute`, whichever are set, and 0 when neither is. The shift "in the bad
  direction" is `shift` for `bad="higher"`, `-shift` for `bad="lower"`.
- **Verdicts**, in this order:
  1. `nodata`: too few points (above);
  2. `not_confirmed`: the shift in the bad direction is at most `allowed`, whatever p
     (a significant but tiny shift is not worth a rollback; identical samples, or all
     values equal, have a shift of 0 and always land here);
  3. `confirmed`: significant, and (by 2) the shift in the bad direction exceeds `allowed`;
  4. `not_confirmed`: not significant although both sides have at least
     `2 * min_samples` points, enough that a real worsening would have shown;
  5. `inconclusive`: not significant on fewer points: too little data to tell.
  A shift that overflows (values near the float limit) is `inconclusive` too.
- **Overall:** any KPI `confirmed` -> `confirmed`; else any `inconclusive` or `nodata` ->
  `inconclusive`, except that when every KPI (or none at all) is `nodata` -> `nodata`;
  else `not_confirmed`.

Known limit: a KPI that is mostly one value (an error ratio that is 0 most of the time)
can have a shift of 0 while the test is significant, which is `not_confirmed` by rule 2.
Such KPIs judge better over a longer rate window, so that most points are not 0.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Verdict = Literal["confirmed", "not_confirmed", "inconclusive", "nodata"]

# The Hodges-Lehmann shift is exact up to this many points a side: 2,000 x 2,000 pairwise
# differences are 32 MB of float64, and their median takes some 50 ms.
SHIFT_MAX_POINTS = 2_000


@dataclass(frozen=True)
class Limits:
    """How one KPI is judged: its bad direction, the test's confidence, the allowed effect
    (relative to the old median and/or in the KPI's unit) and the data needed."""

    bad: Literal["higher", "lower"]
    confidence: float = 0.98
    relative: float | None = 0.10
    absolute: float | None = None
    min_samples: int = 10

    def __post_init__(self) -> None:
        if self.bad not in ("higher", "lower"):
            raise ValueError(f"bad must be 'higher' or 'lower', not {self.bad!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie strictly between 0 and 1: {self.confidence}")
        for name in ("relative", "absolute"):
            value = getattr(self, name)
            # NaN fails `value >= 0` as well.
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be at least 0 or None: {value}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1: {self.min_samples}")

    @property
    def alpha(self) -> float:
        """The one-sided test's significance level, 1 - confidence."""
        return 1 - self.confidence


@dataclass(frozen=True)
class Comparison:
    """One KPI's verdict and the numbers behind it (None where not computed)."""

    verdict: Verdict
    n_new: int
    n_old: int
    median_new: float | None
    median_old: float | None
    u: float | None
    p_value: float | None
    shift: float | None
    allowed: float | None
    reason: str

    def as_dict(self) -> dict:
        """Every field, JSON-safe: plain ints and floats, None for NaN and infinities."""
        return {key: _json_safe(value) for key, value in asdict(self).items()}


def compare(new: Sequence[float], old: Sequence[float], limits: Limits) -> Comparison:
    """Judge one KPI: is `new` (the new revision's observations) worse than `old` by more
    than `limits` allow, significantly? The rules are in the module's docstring."""
    new_x, old_x = _finite(new), _finite(old)
    n_new, n_old = len(new_x), len(old_x)
    median_new, median_old = _median(new_x), _median(old_x)
    allowed = _allowed(limits, median_old)

    def result(verdict: Verdict, reason: str, **stats: float | None) -> Comparison:
        return Comparison(
            verdict,
            n_new,
            n_old,
            median_new,
            median_old,
            stats.get("u"),
            stats.get("p_value"),
            stats.get("shift"),
            allowed,
            reason,
        )

    if n_new < limits.min_samples or n_old < limits.min_samples:
        dropped = len(new) + len(old) - n_new - n_old
        return result(
            "nodata",
            f"Too little data: {n_new} points for the new revision and {n_old} for the old, "
            f"at least {limits.min_samples} needed on each side"
            + (f" ({dropped} NaN or infinite values dropped)." if dropped else "."),
        )

    test = load_statistics()(
        new_x,
        old_x,
        alternative="greater" if limits.bad == "higher" else "less",
        method="auto",
    )
    u, p = float(test.statistic), float(test.pvalue)
    shift = _hodges_lehmann(new_x, old_x)
    stats = {"u": u, "p_value": p, "shift": shift}
    # `allowed` is a number here: the old side has data.
    limit = allowed if allowed is not None else 0.0
    worse = shift if limits.bad == "higher" else -shift
    # NaN < alpha is False: a p-value scipy could not compute is never significant.
    significant = p < limits.alpha
    p_text = f"p = {p:.3g} {'<' if significant else '>='} {limits.alpha:.3g}"

    if not math.isfinite(shift):
        return result(
            "inconclusive",
            "The values are too large to estimate the shift between the revisions.",
            **stats,
        )
    if worse <= 0:
        return result(
            "not_confirmed",
            f"The new revision is not worse: its shift from the old is {shift:+.3g}, and "
            f"{limits.bad} is bad ({p_text}).",
            **stats,
        )
    if worse <= limit:
        return result(
            "not_confirmed",
            f"The new revision is {limits.bad} by only {worse:.3g}, within the allowed "
            f"{limit:.3g} ({p_text}).",
            **stats,
        )
    if significant:
        return result(
            "confirmed",
            f"The new revision is worse: {limits.bad} by {worse:.3g}, more than the allowed "
            f"{limit:.3g}, and significant at {_percent(limits.confidence)} ({p_text}).",
            **stats,
        )
    enough = 2 * limits.min_samples
    if n_new >= enough and n_old >= enough:
        return result(
            "not_confirmed",
            f"No significant worsening ({p_text}) on {n_new} and {n_old} points, enough "
            f"(at least {enough} a side) to call the new revision no worse.",
            **stats,
        )
    return result(
        "inconclusive",
        f"The estimated shift of {worse:+.3g} ({limits.bad}) exceeds the allowed "
        f"{limit:.3g} but is not significant ({p_text}) on only {n_new} and {n_old} points "
        f"(fewer than {enough} a side): too little data to tell.",
        **stats,
    )


def overall(comparisons: Sequence[Comparison]) -> Verdict:
    """The verdict over all KPIs: confirmed if any is; else inconclusive if any is
    inconclusive or has no data (nodata when all have none, or there are none); else
    not_confirmed."""
    verdicts = {c.verdict for c in comparisons}
    if verdicts <= {"nodata"}:
        return "nodata"
    if "confirmed" in verdicts:
        return "confirmed"
    if verdicts & {"inconclusive", "nodata"}:
        return "inconclusive"
    return "not_confirmed"


def load_statistics():
    """scipy's Mann-Whitney U test, imported on first use: scipy adds some 70 MiB and half a
    second to a process, and the watcher and every CLI command but `judge` never judge.
    The worker imports it once before it forks (workers/worker.py)."""
    # scipy ships no type information (no py.typed, no stubs pinned).
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

    return mannwhitneyu


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _allowed(limits: Limits, median_old: float | None) -> float | None:
    """The effect the limits allow: the larger of the set ones, 0 when none is set, None
    when only the relative one is and the old side has no median."""
    if limits.relative is None and limits.absolute is None:
        return 0.0
    terms = [] if limits.absolute is None else [limits.absolute]
    if limits.relative is not None and median_old is not None:
        # A relative limit of 0 allows 0, even of an infinite (overflowed) median.
        terms.append(limits.relative * abs(median_old) if limits.relative else 0.0)
    return max(terms) if terms else None


def _hodges_lehmann(new: np.ndarray, old: np.ndarray) -> float:
    """The median of all pairwise differences new_i - old_j (on evenly spaced order
    statistics above SHIFT_MAX_POINTS a side)."""
    # Both sides are thinned the same way, from sorted values: a sample and a permutation
    # of it give the same points, so their differences stay symmetric and the shift 0.
    a, b = _thin(np.sort(new)), _thin(np.sort(old))
    # Values near the float limit overflow to inf (and inf - inf to NaN); the caller
    # checks the result rather than numpy warning here.
    with np.errstate(over="ignore", invalid="ignore"):
        differences = np.subtract.outer(a, b).ravel()
        # + 0.0 turns a median of -0.0 into 0.0, for the record's sake.
        return float(np.median(differences, overwrite_input=True)) + 0.0


def _median(values: np.ndarray) -> float | None:
    if not len(values):
        return None
    # The mean of the two middle values can overflow near the float limit (inf, recorded
    # as None); not worth a warning.
    with np.errstate(over="ignore"):
        return float(np.median(values))


def _thin(ordered: np.ndarray) -> np.ndarray:
    if len(ordered) <= SHIFT_MAX_POINTS:
        return ordered
    picks = np.round(np.linspace(0, len(ordered) - 1, SHIFT_MAX_POINTS)).astype(int)
    return ordered[picks]


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _json_safe(value: object) -> object:
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
