"""Verification of the prior version against a real Prometheus scraping a test exporter."""

import pytest

from core.integrations.prometheus import Prometheus
from tests.workloads import FAST, bad_release

pytestmark = pytest.mark.integration

ERROR_RATIO = 'backstop_test_error_ratio{workload="checkout"}'


def verified_policy(**verify) -> dict:
    queries = [
        {
            "name": "error_ratio",
            "query": ERROR_RATIO,
            "comparison": "<",
            "threshold": 0.01,
            "unit": "ratio",
        }
    ]
    return {
        **FAST,
        "defaults": {
            **FAST["defaults"],
            "verify": {"queries": queries, "interval": "1s", "window": "3s", **verify},
        },
    }


def test_kpis_that_hold_for_the_window_verify_the_rollback(make_stack, prometheus, exporter):
    exporter.set("backstop_test_error_ratio", 0.002, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.002)
    stack = make_stack(verified_policy())
    workload = bad_release(stack)
    rollback = stack.roll_back(
        stack.alert(workload), stack.executor(prometheus=Prometheus(prometheus.url))
    )
    assert (rollback.status, rollback.reason) == ("verified", "kpis_recovered")
    result = rollback.verification
    assert result["mode"] == "prometheus" and result["held"] is True
    samples = result["queries"]["error_ratio"]["samples"]
    assert len(samples) >= 3 and all(s["values"] == [0.002] for s in samples)


def test_kpis_still_broken_fail_verification_and_freeze(make_stack, prometheus, exporter):
    exporter.set("backstop_test_error_ratio", 0.2, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.2)
    stack = make_stack(verified_policy())
    workload = bad_release(stack)
    rollback = stack.roll_back(
        stack.alert(workload), stack.executor(prometheus=Prometheus(prometheus.url))
    )
    assert (rollback.status, rollback.reason) == ("verification_failed", "kpis_not_recovered")
    assert "error_ratio broke its threshold" in rollback.verification["detail"]
    assert stack.store.automation.paused(workload)["by"] == "backstop"


def test_waiting_for_the_alert_to_resolve(make_stack, prometheus, exporter):
    exporter.set("backstop_test_error_ratio", 0.0, workload="checkout")
    prometheus.wait_for_value(ERROR_RATIO, lambda v: v == 0.0)
    stack = make_stack(verified_policy(wait_for_resolved=True))
    workload = bad_release(stack)
    rollback = stack.roll_back(
        stack.alert(workload), stack.executor(prometheus=Prometheus(prometheus.url))
    )
    # The kill-switch episode never resolved, so the rollback is not called healthy.
    assert (rollback.status, rollback.reason) == ("verification_failed", "kpis_not_recovered")
    assert "did not resolve" in rollback.verification["detail"]
