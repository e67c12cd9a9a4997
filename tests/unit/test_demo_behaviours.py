"""The demo service's behaviour model (gameday/behaviours.py): a behaviour per image tag, and
the draws of a step, flat or seeded noise whose long-run averages are the flat ones."""

import math
import statistics

import pytest

from gameday.behaviours import (
    BEHAVIOURS,
    DEFAULT_BEHAVIOUR,
    Behaviour,
    Flat,
    Noisy,
    behaviour_for,
    image_tag,
)


def test_the_behaviour_follows_the_image_tag():
    assert image_tag("registry:5000/demo/checkout:1.1.0-errors") == "1.1.0-errors"
    assert image_tag("registry:5000/demo/checkout") == ""
    assert image_tag("demo/checkout@sha256:abc") == ""
    assert behaviour_for("demo/checkout:1.1.0-errors") is BEHAVIOURS["-errors"]
    assert behaviour_for("demo/checkout:1.1.0-slow") is BEHAVIOURS["-slow"]
    assert behaviour_for("demo/checkout:1.0.0") is DEFAULT_BEHAVIOUR


def test_a_tag_can_break_one_client_segment_only():
    broken = behaviour_for("demo/checkout:1.1.0-errors-ios")
    assert broken.error_ratio_for("ios") == 0.05
    assert broken.error_ratio_for("web") == broken.error_ratio_for("") == 0.001
    assert DEFAULT_BEHAVIOUR.error_ratio_for("ios") == 0.001


def test_flat_answers_exactly_the_expected_counts():
    slow = Behaviour(error_ratio=0.01, slow_ratio=0.1)
    answered = Flat().answer(12.5, 0.01, slow)
    assert answered.failed == 12.5 * 0.01
    assert answered.ok == 12.5 * 0.99
    assert answered.durations == [(0.05, 12.5 * 0.9), (2.5, 12.5 * 0.1)]


@pytest.mark.parametrize("mean", [0.7, 12.5, 400.0, 2500.0])  # 2500: the normal branch
def test_poisson_counts_have_the_mean_and_the_variance_of_the_mean(mean):
    noisy = Noisy(seed=1)
    counts = [noisy.poisson(mean) for _ in range(4000)]
    assert all(isinstance(count, int) and count >= 0 for count in counts)
    # Standard errors: sqrt(mean / 4000) for the mean, ~mean * sqrt(2 / 4000) for the variance.
    assert statistics.fmean(counts) == pytest.approx(mean, abs=5 * math.sqrt(mean / 4000))
    assert statistics.variance(counts) == pytest.approx(mean, rel=0.12)


def test_poisson_of_nothing_is_nothing():
    noisy = Noisy(seed=1)
    assert [noisy.poisson(0.0), noisy.poisson(-1.0)] == [0, 0]


@pytest.mark.parametrize(("trials", "p"), [(1500, 0.003), (40, 0.05), (200, 0.5), (30, 0.9)])
def test_binomial_counts_have_the_binomial_mean_and_variance(trials, p):
    noisy = Noisy(seed=2)
    counts = [noisy.binomial(trials, p) for _ in range(4000)]
    assert all(0 <= count <= trials for count in counts)
    mean, variance = trials * p, trials * p * (1 - p)
    assert statistics.fmean(counts) == pytest.approx(mean, abs=5 * math.sqrt(variance / 4000))
    assert statistics.variance(counts) == pytest.approx(variance, rel=0.12)


def test_binomial_edges():
    noisy = Noisy(seed=3)
    assert noisy.binomial(100, 0.0) == 0
    assert noisy.binomial(100, 1.0) == 100
    assert noisy.binomial(0, 0.5) == 0
    assert noisy.binomial(10**6, 1e-310) == 0  # a gap too long for a float is no success
    assert noisy.binomial(10**6, 1 - 1e-16) == 10**6


def test_jitter_spreads_durations_around_the_same_mean():
    noisy = Noisy(seed=4)
    durations = [noisy.jitter(0.05) for _ in range(20000)]
    assert min(durations) > 0
    assert statistics.fmean(durations) == pytest.approx(0.05, rel=0.01)
    assert statistics.pstdev(durations) == pytest.approx(0.05 * 0.25, rel=0.1)


def test_a_noisy_step_answers_whole_requests_of_every_kind():
    noisy = Noisy(seed=5)
    slow = Behaviour(error_ratio=0.05, slow_ratio=0.1)
    steps = [noisy.answer(25.0, 0.05, slow) for _ in range(4000)]
    requests = [step.ok + step.failed for step in steps]
    assert all(float(n).is_integer() for n in requests)
    assert all(len(step.durations) == n for step, n in zip(steps, requests, strict=True))
    assert len(set(requests)) > 10  # scatter
    assert statistics.fmean(requests) == pytest.approx(25.0, rel=0.02)
    failed = sum(step.failed for step in steps)
    assert failed / sum(requests) == pytest.approx(0.05, rel=0.1)
    took = [seconds for step in steps for seconds, _ in step.durations]
    assert sum(seconds > 1.0 for seconds in took) / len(took) == pytest.approx(0.1, rel=0.1)


def test_the_same_seed_draws_the_same_steps_and_another_does_not():
    def draws(seed):
        noisy = Noisy(seed)
        return [noisy.answer(12.5, 0.05, DEFAULT_BEHAVIOUR) for _ in range(50)]

    assert draws(9) == draws(9)
    assert draws(9) != draws(10)
