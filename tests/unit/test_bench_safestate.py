"""bench/safestate.py's arithmetic: the window-crossing time, the floor and its terms, the
stages between moments, and the policy a variant's canary gets (bench/safestack.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from bench.safeprobe import Watched, prometheus_time
from bench.safestack import Variant, Windows, kill_switches, service
from bench.safestate import AFTER, BAD, BEFORE, GOOD, crossing_seconds, floor, stages
from config.policy import Policy
from gameday.behaviours import behaviour_for
from gameday.scenarios import image

WINDOWS = Windows()


def test_the_window_crosses_the_threshold_after_its_share_of_the_jump():
    # 0.1% -> 3% over 2 minutes crosses 1% once 0.9 / 2.9 of the window is bad.
    assert crossing_seconds(WINDOWS) == pytest.approx(120 * 0.009 / 0.029)
    assert crossing_seconds(WINDOWS, before=0.0, after=0.02) == pytest.approx(60.0)
    with pytest.raises(ValueError):
        crossing_seconds(WINDOWS, after=0.005)


def test_the_floor_sums_its_terms_and_min_firing_overlaps_group_wait():
    quick = floor(WINDOWS, Variant("a", hold=60, min_firing=0), rollout=2.0)
    terms = ("scrape", "window_crossing", "for", "group_wait", "rollout")
    assert quick["total"] == pytest.approx(sum(quick[t] for t in terms), abs=1e-3)
    assert quick["total"] == pytest.approx(15 + 37.241 + 60 + 30 + 2, abs=1e-3)
    assert quick["with_min_firing"] == quick["total"]
    # A min_firing within group_wait costs nothing; beyond it, only the excess.
    hidden = floor(WINDOWS, Variant("b", hold=60, min_firing=20), rollout=2.0)
    assert hidden["with_min_firing"] == hidden["total"]
    held = floor(WINDOWS, Variant("c", hold=60, min_firing=60), rollout=2.0)
    assert held["with_min_firing"] == pytest.approx(held["total"] + 30)


def test_stages_are_the_gaps_between_consecutive_moments():
    start = datetime(2026, 12, 5, 10, tzinfo=UTC)
    moments = {"onset": start, "active": start + timedelta(seconds=50), "fired": None}
    assert stages(moments) == {"onset->active": 50.0, "active->fired": None}


def test_the_probe_sees_onset_then_safe_state():
    watched = Watched("svc", "svc-canary", "demo/svc:1.0.0")
    t = datetime(2026, 12, 5, 10, tzinfo=UTC)
    watched.observe(["demo/svc:1.0.0"] * 3, t)
    assert watched.onset is None
    watched.observe(["demo/svc:1.0.0", "demo/svc:1.1.0-errors3pct"], t + timedelta(seconds=1))
    watched.observe(["demo/svc:1.0.0", "demo/svc:1.1.0-errors3pct"], t + timedelta(seconds=2))
    watched.observe(["demo/svc:1.0.0"], t + timedelta(seconds=3))
    assert (watched.onset, watched.safe) == (t + timedelta(seconds=1), t + timedelta(seconds=3))


def test_prometheus_times_keep_microseconds():
    assert prometheus_time("2026-12-05T10:00:01.123456789Z") == datetime(
        2026, 12, 5, 10, 0, 1, 123456, tzinfo=UTC
    )
    assert prometheus_time("2026-12-05T10:00:01Z") == datetime(2026, 12, 5, 10, 0, 1, tzinfo=UTC)


def test_each_variant_gets_its_for_and_its_min_firing():
    variant = Variant("for2m", hold=120, min_firing=0)
    rule = kill_switches(WINDOWS, (variant,))["groups"][0]["rules"][0]
    assert rule["for"] == "120s"
    assert "[120s]" in rule["expr"] and 'deployment="for2m-canary"' in rule["expr"]
    entry = service(WINDOWS, variant).policy()
    policy = Policy.model_validate({"services": [entry]})
    assert policy.services[0].min_firing == timedelta(0)


def test_the_canary_release_answers_three_percent_and_the_stable_one_a_tenth():
    assert behaviour_for(image("svc", BAD)).error_ratio == AFTER == 0.03
    assert behaviour_for(image("svc", GOOD)).error_ratio == BEFORE == 0.001
