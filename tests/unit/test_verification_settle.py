"""Verification waits `settle` before judging, so ranges drain the bad version's samples."""

from datetime import UTC, datetime, timedelta

from config.policy import VerifyPolicy
from workers.verification import Waiting, verify_kpis

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class Sample:
    def __init__(self, value: float):
        self.value = value


class RatioAfterRevert:
    """Our Prometheus interface: the error ratio still includes the bad version for 10 s."""

    def __init__(self, clock):
        self.clock = clock

    def query(self, *, expr: str):
        elapsed = (self.clock() - T0).total_seconds()
        return [Sample(0.05 if elapsed < 10 else 0.001)]


def run(settle: str) -> dict:
    now = [T0]

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    waiting = Waiting(clock=lambda: now[0], sleep=sleep)
    policy = VerifyPolicy.model_validate(
        {
            "queries": [{"name": "ratio", "query": "r", "comparison": "<", "threshold": 0.01}],
            "interval": "2s",
            "window": "6s",
            "settle": settle,
        }
    )
    return verify_kpis(
        RatioAfterRevert(lambda: now[0]), policy, waiting=waiting, resolved=lambda: True
    )


def test_without_settle_the_old_samples_fail_verification():
    assert run("0s")["held"] is False


def test_settle_waits_for_the_range_to_drain_then_judges_the_whole_window():
    result = run("10s")
    samples = result["queries"]["ratio"]["samples"]
    assert result["held"] is True
    assert samples[0]["at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert len(samples) == 4  # at 10, 12, 14 and 16 s
