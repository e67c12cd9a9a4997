"""The statistics of the judgment (core/judgment.py): scipy's Mann-Whitney U against values
computed by hand, the Hodges-Lehmann shift, the bad direction, the allowed effect, the
verdict rules, `overall`, the records, and properties that must hold for any data."""

import json
import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.judgment import SHIFT_MAX_POINTS, Comparison, Limits, compare, overall

# Seeded draws only: every run judges the same numbers.
SEED = 20261205


def noisy(level: float, n: int, seed: int, spread: float = 0.2) -> list[float]:
    """`n` points around `level`, each off by up to +-`spread` of it."""
    rng = np.random.default_rng(seed)
    return list(level * (1 + rng.uniform(-spread, spread, n)))


# -- scipy's reference behaviour, by hand -------------------------------------------------


def test_the_tiny_example_matches_the_exact_distribution():
    # Every new point beats every old one: U = 3 * 3 = 9. Under the null all C(6, 3) = 20
    # rankings are equally likely and only this one reaches U = 9: one-sided p = 1/20.
    small = Limits("higher", min_samples=3)
    result = compare([4, 5, 6], [1, 2, 3], small)
    assert result.u == 9.0
    assert result.p_value == pytest.approx(1 / math.comb(6, 3))
    assert (result.median_new, result.median_old) == (5.0, 2.0)
    # The other direction asks P(U <= 9), which is certain.
    assert compare([4, 5, 6], [1, 2, 3], Limits("lower", min_samples=3)).p_value == 1.0


def test_ties_use_the_tie_corrected_normal_approximation():
    new = [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5]
    old = [0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5]
    n, m = len(new), len(old)
    u = sum((a > b) + 0.5 * (a == b) for a in new for b in old)
    # Var(U) with ties: n m / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))), t the size of
    # each group of equal values in the pooled sample; a continuity correction of 1/2.
    pooled = new + old
    big_n = n + m
    ties = sum(t**3 - t for t in (pooled.count(v) for v in set(pooled)))
    sigma = math.sqrt(n * m / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1))))
    z = (u - n * m / 2 - 0.5) / sigma
    expected_p = 0.5 * math.erfc(z / math.sqrt(2))
    result = compare(new, old, Limits("higher"))
    assert result.u == u
    assert result.p_value == pytest.approx(expected_p, rel=1e-12)


def test_the_hodges_lehmann_shift_is_the_median_of_pairwise_differences():
    # new - old: 10-9=1, 10-11=-1, 12-9=3, 12-11=1, 30-9=21, 30-11=19 -> -1 1 1 3 19 21,
    # whose median is (1 + 3) / 2 = 2.
    two = Limits("higher", min_samples=2)
    assert compare([10, 12, 30], [9, 11], two).shift == 2.0
    assert compare([4, 5, 6], [1, 2, 3], Limits("higher", min_samples=3)).shift == 3.0


def test_an_outlier_moves_neither_the_test_nor_the_shift():
    two = Limits("higher", min_samples=2)
    calm, wild = compare([10, 12, 30], [9, 11], two), compare([10, 12, 3e9], [9, 11], two)
    assert (wild.u, wild.p_value, wild.shift) == (calm.u, calm.p_value, calm.shift)


def test_above_the_cap_the_shift_is_thinned_but_close_and_the_test_uses_every_point():
    rng = np.random.default_rng(SEED)
    new, old = rng.normal(100.5, 3, 3_000), rng.normal(100, 3, 2_500)
    exact = float(np.median(np.subtract.outer(new, old)))
    result = compare(list(new), list(old), Limits("higher"))
    assert len(new) > SHIFT_MAX_POINTS and result.shift != exact
    assert result.shift == pytest.approx(exact, abs=0.01)
    assert (result.n_new, result.n_old) == (3_000, 2_500)
    assert result.u == float(np.sum(new[:, None] > old[None, :]))


# -- direction and limits ------------------------------------------------------------------


def test_the_bad_direction_decides_what_worse_means():
    old = noisy(1000, 40, SEED)
    slower = [v * 0.8 for v in noisy(1000, 40, SEED + 1)]
    faster = [v * 1.2 for v in noisy(1000, 40, SEED + 2)]
    throughput = Limits("lower")
    dropped = compare(slower, old, throughput)
    assert dropped.verdict == "confirmed" and dropped.shift < -dropped.allowed < 0
    assert compare(faster, old, throughput).verdict == "not_confirmed"
    # The same drop is no harm to a KPI whose bad direction is up.
    assert compare(slower, old, Limits("higher")).verdict == "not_confirmed"
    assert compare(faster, old, Limits("higher")).verdict == "confirmed"


def test_the_relative_limit_scales_with_the_old_median():
    old = noisy(10, 60, SEED, spread=0.02)
    new = [v * 1.05 for v in noisy(10, 60, SEED + 1, spread=0.02)]
    lenient = compare(new, old, Limits("higher", relative=0.10))
    assert lenient.allowed == pytest.approx(0.10 * lenient.median_old)
    assert lenient.verdict == "not_confirmed" and lenient.p_value < 0.001
    strict = compare(new, old, Limits("higher", relative=0.02))
    assert strict.verdict == "confirmed" and strict.shift == pytest.approx(0.5, abs=0.1)
    # A KPI below zero (a balance, a temperature delta): the limit is of |median|.
    negative = compare([-v for v in old], [-v for v in new], Limits("higher", relative=0.10))
    assert negative.median_old < 0 and negative.allowed == pytest.approx(-0.1 * negative.median_old)
    assert negative.verdict == "not_confirmed"


def test_the_absolute_limit_and_the_larger_of_both():
    old = noisy(10, 60, SEED, spread=0.02)
    new = [v + 1 for v in noisy(10, 60, SEED + 1, spread=0.02)]
    assert compare(new, old, Limits("higher", relative=None, absolute=0.5)).verdict == ("confirmed")
    assert compare(new, old, Limits("higher", relative=None, absolute=2)).verdict == (
        "not_confirmed"
    )
    both = compare(new, old, Limits("higher", relative=0.15, absolute=0.2))
    assert both.allowed == pytest.approx(0.15 * both.median_old)
    assert both.verdict == "not_confirmed"
    none = compare(new, old, Limits("higher", relative=None))
    assert none.allowed == 0.0 and none.verdict == "confirmed"


# -- the verdicts ----------------------------------------------------------------------


def test_too_few_points_are_no_data():
    result = compare(noisy(1, 9, SEED), noisy(1, 40, SEED), Limits("higher"))
    assert result.verdict == "nodata" and result.n_new == 9
    assert (result.u, result.p_value, result.shift) == (None, None, None)
    assert "at least 10" in result.reason


def test_non_finite_values_are_dropped_first():
    nan, inf = float("nan"), float("inf")
    only_nan = compare([nan] * 30, noisy(1, 30, SEED), Limits("higher"))
    assert only_nan.verdict == "nodata" and only_nan.n_new == 0
    assert only_nan.median_new is None and "30 NaN or infinite" in only_nan.reason
    # 0/0 scrapes and a division by zero among real points: judged on the real points.
    mixed = compare(
        [nan, inf, -inf, *noisy(0.03, 12, SEED)], noisy(0.003, 12, SEED + 1), Limits("higher")
    )
    assert mixed.n_new == 12 and mixed.verdict != "nodata"


def test_the_error_ratio_canary_is_confirmed():
    # Ten minutes at 15 s: 40 points a side; the new revision fails 3 % of requests, the
    # old 0.3 %, both with +-30 % noise, a scrape that divided 0 by 0 and one wild spike.
    new = [*noisy(0.03, 39, SEED, spread=0.3), float("nan")]
    old = [*noisy(0.003, 39, SEED + 1, spread=0.3), 0.5]
    result = compare(new, old, Limits("higher"))
    assert result.verdict == "confirmed", result.reason
    assert result.p_value < 0.02 and result.shift == pytest.approx(0.027, abs=0.003)
    assert result.shift > result.allowed


def test_equal_distributions_are_not_confirmed():
    for seed in range(20):
        result = compare(noisy(100, 60, seed), noisy(100, 60, seed + 1000), Limits("higher"))
        assert result.verdict == "not_confirmed", (seed, result.reason)


def test_with_no_allowed_effect_false_alarms_stay_near_the_significance_level():
    # No effect allowed: only the test stands between noise and a rollback. Among 400
    # pairs of samples from the same distribution at most about 2 % (8) may be significant
    # at 0.98 (these seeds give 3: the continuity correction errs on the safe side).
    confirmed = sum(
        compare(
            noisy(100, 30, seed), noisy(100, 30, seed + 10_000), Limits("higher", relative=None)
        ).verdict
        == "confirmed"
        for seed in range(400)
    )
    assert 1 <= confirmed <= 16


def test_a_significant_but_tiny_shift_is_not_confirmed():
    rng = np.random.default_rng(SEED)
    new, old = list(rng.normal(100.3, 1, 2_000)), list(rng.normal(100, 1, 2_000))
    result = compare(new, old, Limits("higher"))
    assert result.p_value < 1e-6 and 0 < result.shift < result.allowed
    assert result.verdict == "not_confirmed" and "within the allowed" in result.reason


def test_not_significant_is_inconclusive_on_small_samples_and_not_confirmed_on_large():
    limits = Limits("higher", relative=None, absolute=0.5)
    small = compare([x + 2 for x in range(12)], list(range(12)), limits)
    assert small.shift == 2.0 and small.p_value >= 0.02
    assert small.verdict == "inconclusive"
    # Twice min_samples a side: enough that a real worsening would have shown.
    large = compare([x + 2 for x in range(24)], list(range(24)), limits)
    assert large.p_value >= 0.02 and large.verdict == "not_confirmed"


def test_values_too_large_for_the_shift_are_inconclusive():
    result = compare([1.7e308] * 12, [-1.7e308] * 12, Limits("higher"))
    assert result.verdict == "inconclusive" and result.shift == math.inf


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "nodata"),
        (["nodata"], "nodata"),
        (["nodata", "nodata"], "nodata"),
        (["confirmed"], "confirmed"),
        (["confirmed", "nodata"], "confirmed"),
        (["not_confirmed", "inconclusive", "confirmed"], "confirmed"),
        (["not_confirmed", "nodata"], "inconclusive"),
        (["not_confirmed", "inconclusive"], "inconclusive"),
        (["inconclusive", "nodata"], "inconclusive"),
        (["not_confirmed"], "not_confirmed"),
        (["not_confirmed", "not_confirmed"], "not_confirmed"),
    ],
)
def test_overall(verdicts, expected):
    comparisons = [Comparison(v, 0, 0, None, None, None, None, None, None, "") for v in verdicts]
    assert overall(comparisons) == expected


def test_the_record_is_json_safe():
    canary = compare(noisy(0.03, 40, SEED), noisy(0.003, 40, SEED + 1), Limits("higher"))
    record = canary.as_dict()
    assert set(record) == {f.name for f in fields(Comparison)}
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert all(type(record[k]) is float for k in ("median_new", "u", "p_value", "shift"))
    assert type(record["n_new"]) is int and record["verdict"] == "confirmed"
    # Overflowed medians and shifts are recorded as None, never as NaN or Infinity.
    huge = compare([1.7e308] * 12, [-1.7e308] * 12, Limits("higher")).as_dict()
    assert huge["shift"] is None and huge["median_new"] is None
    json.dumps(huge, allow_nan=False)
    json.dumps(compare([], [], Limits("lower")).as_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "bad_limits",
    [
        {"bad": "up"},
        {"bad": "higher", "confidence": 1.0},
        {"bad": "higher", "confidence": 0},
        {"bad": "higher", "relative": -0.1},
        {"bad": "higher", "absolute": float("nan")},
        {"bad": "higher", "min_samples": 0},
    ],
)
def test_limits_refuse_nonsense(bad_limits):
    with pytest.raises(ValueError):
        Limits(**bad_limits)


# -- properties --------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, derandomize=True, database=None, deadline=None)
limits = st.builds(
    Limits,
    bad=st.sampled_from(["higher", "lower"]),
    confidence=st.floats(0.5, 0.999),
    relative=st.none() | st.floats(0, 1),
    absolute=st.none() | st.floats(0, 10),
    min_samples=st.integers(1, 15),
)
# Any float at all, NaN, infinities and values near the float limit included.
anything = st.lists(st.floats(), max_size=60)
# Values a KPI takes, with plenty of ties.
kpi_values = st.lists(
    st.floats(-1e9, 1e9, allow_nan=False) | st.sampled_from([0.0, 0.003, 1.0]), max_size=60
)


@PROPERTY
@given(values=anything, limits=limits)
def test_identical_samples_are_never_confirmed(values, limits):
    assert compare(values, values, limits).verdict != "confirmed"


@PROPERTY
@given(data=st.data(), values=anything, limits=limits)
def test_a_sample_against_a_permutation_of_itself_is_never_confirmed(data, values, limits):
    shuffled = data.draw(st.permutations(values))
    assert compare(shuffled, values, limits).verdict != "confirmed"


@PROPERTY
@given(data=st.data(), values=kpi_values, limits=limits)
def test_a_permutation_of_real_values_shifts_nothing(data, values, limits):
    shuffled = data.draw(st.permutations(values))
    result = compare(shuffled, values, limits)
    assert result.verdict in ("not_confirmed", "nodata")
    if result.verdict == "not_confirmed":
        assert result.shift == 0.0 and result.p_value >= 0.5


def test_a_large_sample_against_its_permutation_keeps_a_shift_of_zero():
    # Above the cap the shift is thinned: the same values give the same thinned points.
    values = noisy(0.01, 5_000, SEED, spread=0.9)
    shuffled = list(np.random.default_rng(SEED).permutation(values))
    result = compare(shuffled, values, Limits("higher", relative=None))
    assert result.shift == 0.0 and result.verdict == "not_confirmed"
